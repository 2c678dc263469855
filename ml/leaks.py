"""Final-state attributes. Without `deal_history`, the amount is the value the export holds at the
end, written when the deal closed: some CRMs (and people) zero the amount of a lost deal, so a
missing or zero amount on a closed deal can tell its outcome, a value no one knew while the deal
was open. `final_state_leaks` finds such a feature on labelled rows (whether it is unknown —
missing or <= 0 — differs between won and lost deals by more than LEAK_SHARE_GAP); the win and
time-to-close models then leave it out (their cards say why).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

# Features an export may hold only as their final value (see the module doc) and the gap in the
# share of unknown values (missing or <= 0) between won and lost deals above which they leak.
FINAL_STATE_FEATURES = ("amount_reporting",)
LEAK_SHARE_GAP = 0.2
LEAK_MIN_UNKNOWN = 10


def final_state_leaks(X: pd.DataFrame, won, features=FINAL_STATE_FEATURES,
                      gap: float = LEAK_SHARE_GAP) -> dict[str, str]:
    """{feature: why} for each final-state feature whose being unknown (missing or <= 0) tells
    the outcome on these labelled rows: the shares of unknown values among won and among lost
    rows differ by more than `gap` (and at least LEAK_MIN_UNKNOWN rows are unknown). won: 1/0
    (or True/False) per row of X, only rows whose outcome is known."""
    won = np.asarray(won).astype(bool)
    out = {}
    if won.all() or not won.any():
        return out
    for col in features:
        if col not in X:
            continue
        values = pd.to_numeric(X[col], errors="coerce").to_numpy(float)
        unknown = ~(values > 0)  # NaN or <= 0
        share_won, share_lost = unknown[won].mean(), unknown[~won].mean()
        if unknown.sum() >= LEAK_MIN_UNKNOWN and abs(share_lost - share_won) > gap:
            out[col] = (f"{col} left out: missing or 0 on {share_lost:.0%} of lost and "
                        f"{share_won:.0%} of won examples, a final-state value that tells the "
                        "outcome (no history says what it was while the deal was open)")
    return out
