# Two commands on a fresh clone (each installs what is missing first, and is fast once set up):
#   make run    the headline job: every available method on the ai-readi task, default settings
#   make test   the test suite, exactly the README's test command (CI runs it too)
#   make quick  the fast lane: the tests not marked slow (python -m pytest -q -m "not slow")
PYTHON ?= python

.PHONY: run test quick setup

run: setup
	$(PYTHON) -m cfbench run --task ai-readi --methods all

test:
	@PYTHON=$(PYTHON) ./scripts/setup.sh test
	$(PYTHON) -m pytest -q

quick:
	@PYTHON=$(PYTHON) ./scripts/setup.sh test
	$(PYTHON) -m pytest -q -m "not slow"

setup:
	@PYTHON=$(PYTHON) ./scripts/setup.sh
