#!/usr/bin/env bash
# Set up .venv/ at the repository root: pinned torch, conceptlab (editable) and its dependencies.
# pyproject.toml states compatible ranges; constraints.txt pins the versions we test, and every
# install here goes through it. --test adds the test extras and Debian's chromium for the browser
# tests. Re-running is cheap: each step is skipped when its stamp is newer than pyproject.toml and
# constraints.txt.
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
# the exact torch build we test (the library itself only asks for a range)
TORCH="torch==2.14.1 torchvision==0.29.1"

# true when the stamp $1 is missing or older than what the install depends on
stale() { [ ! -f "$1" ] || [ pyproject.toml -nt "$1" ] || [ constraints.txt -nt "$1" ]; }

stamp=.venv/.conceptlab-setup
if stale "$stamp"; then
  echo "[setup] installing $TORCH and conceptlab (a few minutes the first time)"
  $PIP install -q --upgrade pip >/dev/null 2>&1 || true
  $PIP install -q -c constraints.txt $TORCH
  $PIP install -q -c constraints.txt -e .
  touch "$stamp"
fi

if [ "$want_test" = 1 ]; then
  tstamp=.venv/.conceptlab-setup-test
  if stale "$tstamp"; then
    echo "[setup] installing test extras"
    $PIP install -q -c constraints.txt -e '.[test]'
    # declares transformers<5 yet runs on 5.x (it only imports PreTrainedTokenizerBase): no deps
    $PIP install -q --no-deps -c constraints.txt steering-vectors
    touch "$tstamp"
  fi
  if [ ! -x /usr/bin/chromium ]; then
    echo "[setup] installing Debian's chromium for the browser tests"
    SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq && $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  fi
fi
echo "[setup] ready: .venv/bin/conceptlab"
