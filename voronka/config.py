"""The workspace and its configuration (voronka.yaml), read in one place.

A workspace (default ./voronka_workspace, or $VORONKA_HOME, or --workspace) holds inbox/, the
DuckDB warehouse, Dagster's home, reports and alerts. Secrets never live in voronka.yaml: a sink
names the environment variable that holds its secret, read only when an alert is sent.
"""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass, field, fields
from pathlib import Path

import yaml

from voronka.alerts import AlertSettings, validate_sinks
from voronka.alerts.checks import ALERT_KINDS
from voronka.errors import ConfigError

CONFIG_FILE = "voronka.yaml"
WORKSPACE_ID_FILE = "workspace_id"  # the workspace's identity, written once (see Workspace.workspace_id)
DEFAULT_CONFIG_TEXT = """\
# Voronka workspace configuration. Secrets (webhook URLs, SMTP passwords) are never written
# here: a sink names the environment variable that holds them.
reporting_currency: USD      # every money figure in the marts, forecast and report
required_coverage: 3.0       # open pipeline / remaining target below this -> WARN
critical_coverage: 1.0       # below this the pipeline cannot cover the gap even if all wins -> ERROR
timezone: UTC                # time zone of exports that carry local times
forecast_draws: 2000         # Monte Carlo draws per forecast
forecast_deal_correlation: 0.005  # common shock between deals in the model forecast (0 = independent)
min_prob_hit_target: 0.5     # P(hit target) below this for this/next period -> WARN
max_stalled_share: 0.35      # open deals stalled in their stage above this share -> WARN
max_export_age_days: 3       # newest export older than this (wall clock) -> WARN; never on --as-of replays
backtest_max_origins: 24     # newest monthly origins the weekly backtest replays
backtest_draws: 1000         # Monte Carlo draws per backtest forecast
seed: 42
models_dir: ""               # trained models; empty = models/ inside this workspace
alert_reminder_hours: 24     # repeat an alert while the check stays bad (0 = never)
alert_retry_attempts: 3      # tries per sink before a delivery is recorded as failed
alert_on: [pipeline_coverage, export_freshness, prob_hit_target, new_pipeline, stalled_deals, missing_fx]  # checks that alert
max_quarantined_share: 0.05  # a file with more of its rows quarantined fails ingest (exit 1; the rest loads)
# stage_outcomes:            # closed deals in stages of unknown outcome, per pipeline ("*" = any)
#   "*": {Выдано: won, Отказ клиента: lost}
# sources:                   # exports read with a mapping (docs/mapping.md); `voronka ingest --mapping` adds one
#   - pattern: "leads_*.csv"
#     mapping: mappings/leads.yaml
alerts:                      # sinks; see docs/configuration.md, "Alerts"
  - type: file               # JSON lines under alerts/ in the workspace
    path: alerts/alerts.jsonl
  # - type: slack
  #   webhook_url_env: VORONKA_SLACK_WEBHOOK
  # - type: email
  #   host: smtp.example.com
  #   username: voronka@example.com
  #   password_env: VORONKA_SMTP_PASSWORD
  #   from: voronka@example.com
  #   to: [sales-leads@example.com]
"""


@dataclass(frozen=True)
class VoronkaConfig:
    reporting_currency: str = "USD"
    required_coverage: float = 3.0
    critical_coverage: float = 1.0
    timezone: str = "UTC"
    forecast_draws: int = 2000
    forecast_deal_correlation: float = 0.005
    min_prob_hit_target: float = 0.5
    max_stalled_share: float = 0.35
    max_export_age_days: float = 3.0
    backtest_max_origins: int = 24
    backtest_draws: int = 1000
    seed: int = 42
    alerts: tuple = field(default_factory=lambda: validate_sinks([{"type": "file", "path": "alerts/alerts.jsonl"}]))
    alert_reminder_hours: float = 24.0
    alert_retry_attempts: int = 3
    alert_retry_delay_seconds: float = 0.5
    alert_timeout_seconds: float = 10.0
    alert_on: tuple = ALERT_KINDS  # the checks whose turning bad (and back) is sent to the sinks
    # The trained model store; empty = <workspace>/models. A store shared by several workspaces
    # still only gives each the versions trained on its own data (ml.registry).
    models_dir: str = ""
    # Closed deals whose outcome the CRM does not say: {pipeline or "*": {stage: won|lost|open}}
    # (voronka/ingest/outcomes.py; stage names compared case-blind).
    stage_outcomes: dict = field(default_factory=dict)
    # Exports read with a column mapping: ((glob on the file name, mapping path), ...), the first
    # match wins; a relative mapping path is relative to the workspace.
    sources: tuple = ()
    # A file with a larger share of its rows quarantined fails `voronka ingest` / `voronka run`.
    max_quarantined_share: float = 0.05

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
            for key, low, high in (("forecast_deal_correlation", 0.0, 0.95), ("min_prob_hit_target", 0.0, 1.0),
                                   ("max_stalled_share", 0.0, 1.0), ("max_export_age_days", 0.0, None)):
                if key in values:
                    values[key] = float(values[key])
                    if values[key] < low or (high is not None and values[key] > high):
                        raise ValueError(f"{key} must be between {low:g} and {high:g}" if high is not None
                                         else f"{key} must not be negative")
            for key in ("backtest_max_origins", "backtest_draws"):
                if key in values:
                    values[key] = int(values[key])
                    if values[key] < 1:
                        raise ValueError(f"{key} must be at least 1")
            if "alerts" in values:
                values["alerts"] = validate_sinks(values["alerts"] or [])
            for key, low, high in (("alert_reminder_hours", 0.0, None), ("alert_retry_delay_seconds", 0.0, 60.0),
                                   ("alert_timeout_seconds", 0.1, 120.0)):
                if key in values:
                    values[key] = float(values[key])
                    if values[key] < low or (high is not None and values[key] > high):
                        raise ValueError(f"{key} must be between {low:g} and {high:g}" if high is not None
                                         else f"{key} must not be negative")
            if "alert_on" in values:
                kinds = values["alert_on"] or []
                if isinstance(kinds, str) or not all(isinstance(k, str) for k in kinds):
                    raise ValueError("alert_on must be a list of alert kinds, e.g. [pipeline_coverage]")
                unknown_kinds = [k for k in kinds if k not in ALERT_KINDS]
                if unknown_kinds:
                    raise ValueError(f"alert_on: unknown alert kind {unknown_kinds[0]!r} "
                                     f"(known: {', '.join(ALERT_KINDS)})")
                values["alert_on"] = tuple(kinds)
            if "stage_outcomes" in values:
                from voronka.ingest.outcomes import validate as validate_outcomes

                values["stage_outcomes"] = validate_outcomes(values["stage_outcomes"])
            if "sources" in values:
                values["sources"] = _sources(values["sources"])
            if "max_quarantined_share" in values:
                values["max_quarantined_share"] = float(values["max_quarantined_share"])
                if not 0 <= values["max_quarantined_share"] <= 1:
                    raise ValueError("max_quarantined_share must be between 0 and 1 (0.05 = 5%)")
            if "alert_retry_attempts" in values:
                values["alert_retry_attempts"] = int(values["alert_retry_attempts"])
                if not 1 <= values["alert_retry_attempts"] <= 10:
                    raise ValueError("alert_retry_attempts must be between 1 and 10")
        except (TypeError, ValueError) as err:
            raise ConfigError(f"{source}: {err}") from None
        config = cls(**values)
        if config.critical_coverage > config.required_coverage:
            raise ConfigError(f"{source}: critical_coverage must not exceed required_coverage")
        return config

    def alert_settings(self) -> AlertSettings:
        return AlertSettings(sinks=self.alerts, reminder_hours=self.alert_reminder_hours,
                             attempts=self.alert_retry_attempts, retry_delay=self.alert_retry_delay_seconds,
                             timeout=self.alert_timeout_seconds)


def _sources(entries) -> tuple:
    """`sources:` as ((pattern, mapping), ...); ValueError naming the entry that is wrong."""
    if entries is None:
        return ()
    if not isinstance(entries, list):
        raise ValueError("sources must be a list of {pattern: <glob on the file name>, mapping: <mapping.yaml>}")
    out = []
    for i, entry in enumerate(entries, 1):
        if not isinstance(entry, dict) or set(entry) != {"pattern", "mapping"} or \
                not all(isinstance(entry[k], str) and entry[k].strip() for k in ("pattern", "mapping")):
            raise ValueError(f"sources entry {i} must be {{pattern: <glob on the file name>, "
                             "mapping: <path to the mapping YAML>}")
        out.append((entry["pattern"].strip(), entry["mapping"].strip()))
    return tuple(out)


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
    def alerts(self) -> Path:
        """Alert state (state.json), the delivery record (deliveries.jsonl) and the file sink."""
        return self.home / "alerts"

    @property
    def config_path(self) -> Path:
        return self.home / CONFIG_FILE

    def create(self) -> "Workspace":
        for d in (self.home, self.inbox, self.dagster_home, self.reports, self.alerts):
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

    def models_dir(self) -> Path:
        configured = self.config().models_dir
        return self.resolve(configured) if configured else self.home / "models"

    def workspace_id(self) -> str:
        """This workspace's identity: a random id written once into <home>/workspace_id (the
        folder must exist) on first use and never changed. Every model version records it; a model is only used on the
        workspace it was trained on (a copied workspace keeps its id, and its data)."""
        path = self.home / WORKSPACE_ID_FILE
        try:
            text = path.read_text(encoding="utf-8").strip()
        except FileNotFoundError:
            text = ""
        if text:
            return text
        tmp = path.with_name(f".{WORKSPACE_ID_FILE}.{uuid.uuid4().hex}")
        tmp.write_text(uuid.uuid4().hex + "\n", encoding="utf-8")
        try:
            os.link(tmp, path)  # atomic, and refused when another process wrote it first
        except FileExistsError:
            pass
        except OSError:  # a file system without hard links
            if not path.exists():
                os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
        return path.read_text(encoding="utf-8").strip()

    def model_store(self):
        """The model store of this workspace (versions trained on its data only). A workspace
        folder that does not exist (a read command with a mistyped --workspace) is not created:
        its store has no version."""
        from ml.registry import ModelStore

        identity = self.workspace_id() if self.home.is_dir() else "(no workspace)"
        return ModelStore(self.models_dir(), workspace_id=identity)

    def sources(self) -> tuple:
        """voronka.yaml `sources` with each mapping path resolved: ((pattern, Path), ...)."""
        return tuple((pattern, self.resolve(mapping)) for pattern, mapping in self.config().sources)

    def resolve(self, relative: str) -> Path:
        path = Path(relative)
        return path if path.is_absolute() else self.home / path


def resolve_workspace(explicit: str | os.PathLike | None = None) -> Workspace:
    """--workspace, else $VORONKA_HOME, else ./voronka_workspace (read at call time)."""
    home = explicit or os.environ.get("VORONKA_HOME") or "voronka_workspace"
    return Workspace(Path(home).expanduser().resolve())
