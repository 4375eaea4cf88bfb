# Single entry point. Every target sets the environment up first if needed (tools/bootstrap.sh is
# idempotent: a second run takes about a second).
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: setup test demo clean-venv

setup:
	@bash tools/bootstrap.sh

test: setup
	$(PY) -m pytest tests -q

demo: setup
	@bash tools/demo.sh

clean-venv:
	rm -rf $(VENV)
