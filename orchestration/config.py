"""The workspace and its configuration (voronka.yaml), read in one place.

A workspace (default ./voronka_workspace, or $VORONKA_HOME, or --workspace) holds inbox/, the
DuckDB warehouse, Dagster's home, reports and alerts. Secrets never live in voronka.yaml: a sink
names the environment variable that holds its secret, read only when an alert is sent.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from pathlib import Path

import yaml

from orchestration.ingest.errors import ConfigError

CONFIG_FILE = "voronka.yaml"
DEFAULT_CONFIG_TEXT = """\
# Voronka workspace configuration. Secrets (webhook URLs, SMTP passwords) are never written
# here: a sink names the environment variable that holds them.
reporting_currency: USD      # every money figure in the marts, forecast and report
required_coverage: 3.0       # open pipeline / remaining target below this -> WARN
critical_coverage: 1.0       # below this the pipeline cannot cover the gap even if all wins -> ERROR
timezone: UTC                # time zone of exports that carry local times
forecast_draws: 2000         # Monte Carlo draws per forecast
seed: 42
alerts:
  - type: file               # JSON lines under alerts/ in the workspace
    path: alerts/alerts.jsonl
"""


@dataclass(frozen=True)
class VoronkaConfig:
    reporting_currency: str = "USD"
    required_coverage: float = 3.0
    critical_coverage: float = 1.0
    timezone: str = "UTC"
    forecast_draws: int = 2000
    seed: int = 42
    alerts: tuple = field(default_factory=lambda: ({"type": "file", "path": "alerts/alerts.jsonl"},))

    @classmethod
    def from_mapping(cls, data: dict, source: str = CONFIG_FILE) -> "VoronkaConfig":
        if not isinstance(data, dict):
            raise ConfigError(f"{source}: expected a mapping of settings, got {type(data).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"{source}: unknown setting {unknown[0]!r} (known: {', '.join(sorted(known))})")
        values = dict(data)
        try:
            if "reporting_currency" in values:
                values["reporting_currency"] = str(values["reporting_currency"]).strip().upper()
                if len(values["reporting_currency"]) != 3:
                    raise ValueError("reporting_currency must be an ISO-4217 code such as USD")
            for key in ("required_coverage", "critical_coverage"):
                if key in values:
                    values[key] = float(values[key])
                    if values[key] <= 0:
                        raise ValueError(f"{key} must be positive")
            for key in ("forecast_draws", "seed"):
                if key in values:
                    values[key] = int(values[key])
            if "alerts" in values:
                sinks = values["alerts"] or []
                if not isinstance(sinks, list) or not all(isinstance(s, dict) and "type" in s for s in sinks):
                    raise ValueError("alerts must be a list of sinks, each with a 'type'")
                values["alerts"] = tuple(sinks)
        except (TypeError, ValueError) as err:
            raise ConfigError(f"{source}: {err}") from None
        config = cls(**values)
        if config.critical_coverage > config.required_coverage:
            raise ConfigError(f"{source}: critical_coverage must not exceed required_coverage")
        return config


@dataclass(frozen=True)
class Workspace:
    home: Path

    @property
    def inbox(self) -> Path:
        return self.home / "inbox"

    @property
    def warehouse(self) -> Path:
        return self.home / "warehouse.duckdb"

    @property
    def dagster_home(self) -> Path:
        return self.home / "dagster_home"

    @property
    def reports(self) -> Path:
        return self.home / "reports"

    @property
    def config_path(self) -> Path:
        return self.home / CONFIG_FILE

    def create(self) -> "Workspace":
        for d in (self.home, self.inbox, self.dagster_home, self.reports, self.home / "alerts"):
            d.mkdir(parents=True, exist_ok=True)
        if not self.config_path.exists():
            self.config_path.write_text(DEFAULT_CONFIG_TEXT, encoding="utf-8")
        return self

    def config(self) -> VoronkaConfig:
        if not self.config_path.exists():
            return VoronkaConfig()
        try:
            data = yaml.safe_load(self.config_path.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as err:
            mark = getattr(err, "problem_mark", None)
            where = f" line {mark.line + 1}" if mark else ""
            raise ConfigError(f"{self.config_path}:{where} not valid YAML") from None
        return VoronkaConfig.from_mapping(data, str(self.config_path))

    def resolve(self, relative: str) -> Path:
        path = Path(relative)
        return path if path.is_absolute() else self.home / path


def resolve_workspace(explicit: str | os.PathLike | None = None) -> Workspace:
    """--workspace, else $VORONKA_HOME, else ./voronka_workspace (read at call time)."""
    home = explicit or os.environ.get("VORONKA_HOME") or "voronka_workspace"
    return Workspace(Path(home).expanduser().resolve())
