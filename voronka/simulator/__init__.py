"""The demo-company simulator: a seeded, deterministic sales company with known truth
(no Dagster imports). See docs/simulator.md."""

from voronka.simulator.canonical_writer import write_canonical
from voronka.simulator.company import SimulatedCompany, simulate_company
from voronka.simulator.native_writers import CRMS, EXPORT_TIMEZONES, write_native

__all__ = ["CRMS", "EXPORT_TIMEZONES", "SimulatedCompany", "simulate_company", "write_canonical", "write_native"]
