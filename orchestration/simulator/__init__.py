"""The demo-company simulator: a seeded, deterministic sales company with known truth
(no Dagster imports). See docs/simulator.md."""

from orchestration.simulator.canonical_writer import write_canonical
from orchestration.simulator.company import SimulatedCompany, simulate_company
from orchestration.simulator.native_writers import CRMS, EXPORT_TIMEZONES, write_native

__all__ = ["CRMS", "EXPORT_TIMEZONES", "SimulatedCompany", "simulate_company", "write_canonical", "write_native"]
