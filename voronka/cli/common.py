"""What every part of the `voronka` command shares: exit codes, the user's-mistake error, progress
lines on stderr and date options."""

from __future__ import annotations

import sys
from datetime import date

from voronka.errors import VoronkaUserError

# EXIT_BUSY: the warehouse is held by a run (or another command) and stayed so for a few seconds.
EXIT_OK, EXIT_USER_ERROR, EXIT_CHECKS_FAILED, EXIT_BUSY = 0, 1, 2, 3


class UserError(VoronkaUserError):
    pass


def _progress(message: str, quiet: bool) -> None:
    if not quiet:
        print(message, file=sys.stderr, flush=True)


def _parse_date(text: str, option: str) -> date:
    try:
        return date.fromisoformat(text[:10])
    except ValueError:
        raise UserError(f"{option}: not a date: {text!r} (expected YYYY-MM-DD)") from None
