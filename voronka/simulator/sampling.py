"""The simulator's shared machinery: seeded random streams, weighted draws, and the calendar of the
simulated history (its days and the daily creation intensity of a pipeline) with its FX rates.
numpy and pandas, no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import numpy as np
import pandas as pd

from voronka.simulator.spec import PipelineSpec

DAY = 86_400  # seconds


def _rng(seed: int, stream: int) -> np.random.Generator:
    """An independent stream per component, so changing one part does not reshuffle the others."""
    return np.random.default_rng([seed, stream])


def _normalise(weights) -> np.ndarray:
    w = np.asarray(weights, dtype=float)
    return w / w.sum()


def _choose(rng: np.random.Generator, weights, size: int) -> np.ndarray:
    """Indices drawn with the given weights."""
    cdf = np.cumsum(_normalise(weights))
    return np.minimum(np.searchsorted(cdf, rng.random(size), side="right"), len(cdf) - 1)


def _choose_rows(rng: np.random.Generator, probs: np.ndarray) -> np.ndarray:
    """One index per row of a (rows x options) weight matrix."""
    cdf = np.cumsum(probs, axis=1)
    u = rng.random(len(probs)) * cdf[:, -1]
    return np.minimum((cdf <= u[:, None]).sum(axis=1), probs.shape[1] - 1)


class _Calendar:
    """The history: `days` whole days ending with end_date; plus helpers on day arrays."""

    def __init__(self, end_date: date, years: float):
        self.end_date = end_date
        self.n_days = max(1, int(round(years * 365.25)))
        self.end_day = np.datetime64(end_date, "D")
        self.start_day = self.end_day - (self.n_days - 1)
        self.days = np.arange(self.start_day, self.end_day + 1)
        self.end_ts = int(self.end_day.astype("datetime64[s]").astype(np.int64)) + DAY - 1

    @staticmethod
    def seconds(days: np.ndarray) -> np.ndarray:
        return days.astype("datetime64[s]").astype(np.int64)

    def creation_weights(self, p: PipelineSpec, days: np.ndarray) -> np.ndarray:
        """Relative creation intensity per day: growth x weekday x month x holidays."""
        years_from_end = (days - self.end_day).astype(float) / 365.25
        weekday = (days.astype(np.int64) + 3) % 7  # 1970-01-01 was a Thursday; Monday = 0
        month = days.astype("datetime64[M]").astype(np.int64) % 12 + 1
        dom = (days - days.astype("datetime64[M]").astype("datetime64[D]")).astype(np.int64) + 1
        w = (np.exp(p.growth_per_year * years_from_end) * np.asarray(p.weekday_factors)[weekday]
             * np.asarray(p.month_factors)[month - 1])
        for h in p.holidays:
            w[(month == h.month) & (dom >= h.first_day) & (dom <= h.last_day)] *= h.factor
        return w


@dataclass
class _Fx:
    frame: pd.DataFrame
    usd_per_unit: dict  # currency -> daily rate over the history (np.ndarray)

