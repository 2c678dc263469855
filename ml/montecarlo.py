"""The Monte Carlo engine of the revenue forecast (ml/forecast.py): revenue won by each period
boundary, per draw, when every deal is won or not and, if won, by some boundary.

`simulate_won_by`: per draw, every deal is won or not and, if won, by which period boundary — one
uniform number per (deal, draw) compared with the deal's cumulative P(won by boundary). Deals are
packed eight to a byte and summed through a 256-entry table of their subset sums, in chunks of
deals, so 100k deals x 10k draws never hold more than a chunk. Probabilities are resolved to
1/65536. Deals can share a common shock (`correlation`, a one-factor Gaussian copula: a good
quarter is good for many deals at once; each deal's own P(win by t) is unchanged). Seeded: the
same inputs and seed give the same numbers.
"""

from __future__ import annotations

import numpy as np
from scipy.special import ndtr, ndtri

RESOLUTION = 65536  # probabilities are compared with 16-bit uniforms
_SUBSETS = ((np.arange(256)[:, None] >> np.arange(8)) & 1).astype(np.float64)  # 256 x 8
_BIT_WEIGHTS = (1 << np.arange(8)).astype(np.uint8)[None, :, None]


def factor_levels(correlation: float, groups: int) -> np.ndarray:
    """Values of the common shock, one per group of draws: the midpoints of `groups` equal
    slices of the standard normal (stratified, so few groups represent the factor evenly)."""
    if correlation <= 0:
        return np.zeros(1)
    return ndtri((np.arange(groups) + 0.5) / groups)


def conditional_probability(p: np.ndarray, correlation: float, z: float) -> np.ndarray:
    """P(event | common factor z) under a one-factor Gaussian copula with the given correlation;
    its average over z ~ N(0, 1) is p again."""
    if correlation <= 0:
        return p
    r = np.sqrt(correlation)
    return ndtr((ndtri(np.clip(p, 0.0, 1.0)) - r * z) / np.sqrt(1.0 - correlation))


def draw_groups(draws: int, groups: int) -> np.ndarray:
    """Start of each group's slice of the draws (contiguous, nearly equal), plus the end."""
    return np.linspace(0, draws, groups + 1).round().astype(int)


def simulate_won_by(won_by: np.ndarray, amounts: np.ndarray, cells: np.ndarray | None = None,
                    n_cells: int | None = None, draws: int = 2000,
                    rng: np.random.Generator | int = 0, correlation: float = 0.0,
                    factor_groups: int = 10, chunk: int = 512) -> np.ndarray:
    """Revenue won by each boundary, per cell and draw: shape (n_cells, n_boundaries, draws).

    won_by: (deals, boundaries) cumulative P(the deal is won by boundary b), non-decreasing in b.
    amounts: what a won deal brings. cells: the cell (e.g. pipeline) of each deal, 0..n_cells-1.
    A deal is won by boundary b in a draw when its uniform number is below won_by[:, b] (so the
    boundaries nest). With `correlation` > 0 the draws are split into `factor_groups` groups,
    each with its own value of the common factor (see `factor_levels`).
    """
    rng = np.random.default_rng(rng)
    won_by = np.atleast_2d(np.asarray(won_by, dtype=float))
    amounts = np.asarray(amounts, dtype=float)
    n, n_b = won_by.shape
    cells = np.zeros(n, dtype=np.int64) if cells is None else np.asarray(cells, dtype=np.int64)
    n_cells = int(cells.max()) + 1 if n_cells is None else int(n_cells)
    out = np.zeros((n_cells, n_b, draws))
    z = factor_levels(correlation, factor_groups)
    bounds = draw_groups(draws, len(z))
    live = (won_by[:, -1] > 0) & (amounts != 0)
    won_by, amounts, cells = won_by[live], amounts[live], cells[live]
    thresholds = np.empty((len(z), len(won_by), n_b), dtype=np.int64)
    for g, level in enumerate(z):
        thresholds[g] = np.rint(conditional_probability(won_by, correlation, level) * RESOLUTION)
    # Deals that are certain either way at every boundary need no random numbers.
    certain = ((thresholds == 0) | (thresholds == RESOLUTION)).all(axis=(0, 2))
    for g in range(len(z)):
        sure = (thresholds[g][certain] == RESOLUTION) * amounts[certain, None]
        np.add.at(out[:, :, bounds[g]:bounds[g + 1]], cells[certain],
                  np.broadcast_to(sure[:, :, None], (len(sure), n_b, bounds[g + 1] - bounds[g])))
    thresholds = np.minimum(thresholds[:, ~certain], RESOLUTION - 1).astype(np.uint16)
    amounts, cells = amounts[~certain], cells[~certain]
    chunk = max(8, chunk - chunk % 8)
    order = np.argsort(cells, kind="stable")
    for cell in np.unique(cells):
        rows = order[np.searchsorted(cells[order], cell):np.searchsorted(cells[order], cell, "right")]
        for start in range(0, len(rows), chunk):
            part = rows[start:start + chunk]
            _simulate_chunk(out[cell], thresholds[:, part], amounts[part], bounds, rng)
    return out


def _simulate_chunk(out: np.ndarray, thresholds: np.ndarray, amounts: np.ndarray,
                    bounds: np.ndarray, rng: np.random.Generator, block: int = 2048) -> None:
    """Add one chunk of deals (same cell) to out (n_boundaries, draws), a block of draws at a
    time so the working set stays in cache."""
    pad = (-len(amounts)) % 8
    if pad:  # zero-amount, never-won padding to whole bytes
        amounts = np.concatenate([amounts, np.zeros(pad)])
        thresholds = np.concatenate([thresholds, np.zeros((thresholds.shape[0], pad, thresholds.shape[2]),
                                                           dtype=thresholds.dtype)], axis=1)
    c, draws = len(amounts), out.shape[1]
    n_bytes = c // 8
    table = amounts.reshape(n_bytes, 8) @ _SUBSETS.T  # (bytes, 256): subset sums of each byte's deals
    t = thresholds.reshape(thresholds.shape[0], n_bytes, 8, thresholds.shape[2])
    width = min(block, draws)
    hit = np.empty((n_bytes, 8, width), dtype=bool)
    for g in range(len(bounds) - 1):
        for lo in range(bounds[g], bounds[g + 1], width):
            hi = min(lo + width, bounds[g + 1])
            w = hi - lo
            u = rng.bit_generator.random_raw(-(-c * w // 4)).view(np.uint16)[:c * w].reshape(n_bytes, 8, w)
            h = hit[:, :, :w]
            for b in range(out.shape[0]):
                np.less(u, t[g, :, :, b, None], out=h)
                packed = (h.view(np.uint8) * _BIT_WEIGHTS).sum(axis=1, dtype=np.uint8)
                total = out[b, lo:hi]
                for j in range(n_bytes):
                    total += table[j].take(packed[j])


def simulate_revenue(amounts: np.ndarray, probabilities: np.ndarray, draws: int,
                     rng: np.random.Generator, chunk: int = 512) -> np.ndarray:
    """Revenue per draw when each deal is won independently with its probability."""
    return simulate_won_by(np.asarray(probabilities, float)[:, None], amounts, draws=draws,
                           rng=rng, chunk=chunk)[0, 0]
