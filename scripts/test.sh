#!/usr/bin/env bash
# One command: set up, then run the whole test suite. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# Headless Chromium for the report's browser test (apt-get; the test skips when it can't be had).
# PostgreSQL is installed and started by tests/test_dbt_postgres.py itself (scripts/install_postgres.sh).
bash scripts/install_chromium.sh >&2 || echo "test.sh: Chromium could not be installed; the browser test will be skipped" >&2
exec .venv/bin/python -m pytest "$@"
