# The two commands of the README. Both set up .venv/ first (idempotent, offline-friendly).
.PHONY: app test lint setup setup-test demo

setup:
	bash scripts/setup.sh

setup-test:
	bash scripts/setup.sh --test

# make app PORT=8600 serves on another port (checked before any work)
app: setup
	.venv/bin/conceptlab demo $(if $(PORT),--port $(PORT),)

demo: setup
	.venv/bin/conceptlab demo --no-app

test: setup-test
	bash scripts/run_tests.sh

# ruff (configured in pyproject.toml); tests/test_lint.py runs the same check in the suite
lint: setup-test
	.venv/bin/python -m ruff check conceptlab dashboards tests benchmarks
