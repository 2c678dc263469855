#!/usr/bin/env bash
# One command: set up, start the servers some tests need, then run the whole test suite, the
# slow tier included (plain `pytest` runs the fast tier only: `-m "not slow"` in pyproject.toml).
# Extra arguments go to pytest, after ours: `bash scripts/test.sh -m "not slow"` runs the fast tier.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# Headless Chromium for the report's browser test (apt-get; the test skips when it can't be had).
bash scripts/install_chromium.sh >&2 || echo "test.sh: Chromium could not be installed; the browser test will be skipped" >&2
# A private PostgreSQL server for tests/dbt_project/test_dbt_postgres.py (apt-get installs it when missing); the
# test reads the VORONKA_PG_* variables the script prints, and skips without them. A server given
# by the caller's own VORONKA_PG_HOST is used as it is.
if [ -z "${VORONKA_PG_HOST:-}" ]; then
  if pg_env=$(bash scripts/install_postgres.sh); then
    eval "$pg_env"
  else
    echo "test.sh: PostgreSQL could not be started; the PostgreSQL test will be skipped" >&2
  fi
fi
exec .venv/bin/python -m pytest -m "" "$@"
