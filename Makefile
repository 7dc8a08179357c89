# The two commands of the README. Both set up .venv/ first (idempotent, offline-friendly).
.PHONY: app test setup setup-test demo

setup:
	bash scripts/setup.sh

setup-test:
	bash scripts/setup.sh --test

app: setup
	.venv/bin/conceptlab demo

demo: setup
	.venv/bin/conceptlab demo --no-app

test: setup-test
	bash scripts/run_tests.sh
