#!/usr/bin/env bash
# Set up .venv/ at the repository root: pinned torch, conceptlab (editable) and its dependencies.
# --test adds the test extras and Debian's chromium for the browser tests.
# Re-running is cheap: each step is skipped when its stamp is newer than what it depends on.
set -euo pipefail
cd "$(dirname "$0")/.."
want_test=0
[ "${1:-}" = "--test" ] && want_test=1

PYTHON=${PYTHON:-python3.11}
command -v "$PYTHON" >/dev/null || PYTHON=python3
"$PYTHON" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' || {
  echo "conceptlab needs Python 3.11 (found $("$PYTHON" --version))"; exit 1; }

if [ ! -x .venv/bin/python ]; then
  echo "[setup] creating .venv with $("$PYTHON" --version)"
  "$PYTHON" -m venv .venv
fi
PIP=".venv/bin/python -m pip"

stamp=.venv/.conceptlab-setup
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  echo "[setup] installing torch 2.14.1 + torchvision 0.29.1 and conceptlab (a few minutes the first time)"
  $PIP install -q --upgrade pip >/dev/null 2>&1 || true
  $PIP install -q torch==2.14.1 torchvision==0.29.1
  $PIP install -q -e .
  touch "$stamp"
fi

if [ "$want_test" = 1 ]; then
  tstamp=.venv/.conceptlab-setup-test
  if [ ! -f "$tstamp" ] || [ pyproject.toml -nt "$tstamp" ]; then
    echo "[setup] installing test extras"
    $PIP install -q -e '.[test]'
    touch "$tstamp"
  fi
  if [ ! -x /usr/bin/chromium ]; then
    echo "[setup] installing Debian's chromium for the browser tests"
    SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq && $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  fi
fi
echo "[setup] ready: .venv/bin/conceptlab"
