#!/usr/bin/env bash
# One command: set up, then simulate the demo company and run the whole pipeline on it.
# Extra arguments go to `voronka demo` (e.g. --deals 20000 --workspace /tmp/demo).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/voronka demo "$@"
