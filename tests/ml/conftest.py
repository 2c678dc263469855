"""Shared fixtures for the ML tests: one simulated company (ground truth known) and its as-of
training examples, built once per session."""

from __future__ import annotations

from datetime import date

import pandas as pd
import pytest

from ml.features import build_training_examples
from ml.survival import evaluate_time_to_close
from voronka.simulator.company import simulate_company
from voronka.simulator.ml_frames import ml_frames

END_DATE = date(2026, 6, 30)


@pytest.fixture(scope="session")
def company():
    """The demo simulator's company (6000 deals over 3 years), canonical frames plus truth."""
    return ml_frames(simulate_company(n_deals=6000, seed=1, end_date=END_DATE))


@pytest.fixture(scope="session")
def examples(company):
    return build_training_examples(company["deals"], company["stage_events"],
                                   company["pipeline_stages"], seed=0)


@pytest.fixture(scope="session")
def survival_split(examples):
    return pd.Timestamp(examples["as_of"].quantile(0.8)).normalize()


@pytest.fixture(scope="session")
def survival_report(examples, survival_split):
    return evaluate_time_to_close(examples, survival_split)
