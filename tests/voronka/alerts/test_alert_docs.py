"""docs/configuration.md, "Alerts": every setting is documented and every example is valid."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from voronka.alerts.sinks import _FIELDS
from voronka.config import VoronkaConfig

DOC = Path(__file__).resolve().parents[3] / "docs" / "configuration.md"


def alerts_section() -> str:
    text = DOC.read_text(encoding="utf-8")
    start = text.index("\n## Alerts\n")
    end = text.find("\n## ", start + 1)
    return text[start:] if end < 0 else text[start:end]


def test_every_alert_setting_is_documented():
    section = alerts_section()
    settings = {f for f in VoronkaConfig.__dataclass_fields__ if f.startswith("alert")}
    settings |= set().union(*_FIELDS.values()) | {"type", "name"}
    missing = sorted(s for s in settings if f"`{s}`" not in section and f"{s}:" not in section)
    assert not missing and len(settings) > 15


EXAMPLES = re.findall(r"```yaml\n(.*?)```", alerts_section(), flags=re.S)


@pytest.mark.parametrize("example", EXAMPLES)
def test_every_yaml_example_is_a_valid_config(example):
    config = VoronkaConfig.from_mapping(yaml.safe_load(example))
    assert config.alerts


def test_the_docs_have_an_example_for_every_sink_type():
    kinds = {s["type"] for e in EXAMPLES for s in yaml.safe_load(e).get("alerts", [])}
    assert kinds == set(_FIELDS)
