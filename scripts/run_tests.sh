#!/usr/bin/env bash
# Run the whole test suite offline, as CI does.
set -euo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
# the store and built models of a test run never mix with the user's own
export CONCEPTLAB_HOME="${CONCEPTLAB_TEST_HOME:-$PWD/.conceptlab/test-home}"
mkdir -p artifacts
exec .venv/bin/python -m pytest "$@"
