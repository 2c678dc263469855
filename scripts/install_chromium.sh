#!/usr/bin/env bash
# Installs headless Chromium (Debian's `chromium` package) for tests/voronka/report/test_report_browser.py.
# Idempotent: does nothing when /usr/bin/chromium is already there. Needs root (or sudo) and
# apt-get; on other systems install Chromium yourself — the browser test skips without it.
set -euo pipefail
if [ -x /usr/bin/chromium ]; then
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "install_chromium.sh: apt-get not found; install Chromium at /usr/bin/chromium yourself" >&2
  exit 1
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  SUDO="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >/dev/null
/usr/bin/chromium --version
