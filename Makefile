# Two entry points for a fresh machine: `make run` and `make test`.
# Both create .venv (Python 3.10) on first use and install the pinned stack.

PYTHON ?= $(shell scripts/find_python.sh)
VENV := .venv
VPY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
RUN_ROOT ?= runs/local

export TF_USE_LEGACY_KERAS := 1
export TF_CPP_MIN_LOG_LEVEL := 2
export PYTHONUNBUFFERED := 1

.PHONY: run test test-fast venv clean

venv: $(STAMP)

# pip 23 (what venv brings) backtracks for >10 min on tfx==1.16.0: upgrade it first,
# then install against the frozen constraints.
$(STAMP): setup.py constraints.txt
	@test -n "$(PYTHON)" || { echo "Python 3.10 is required (see scripts/find_python.sh)"; exit 1; }
	@echo ">> creating $(VENV) with $(PYTHON)"
	test -x $(VPY) || $(PYTHON) -m venv $(VENV)
	$(VPY) -m pip install --quiet --upgrade "pip==26.*"
	$(VPY) -m pip install --progress-bar off -c constraints.txt -e ".[test,bench]"
	touch $(STAMP)

run: $(STAMP)
	$(VENV)/bin/duia demo --root $(RUN_ROOT)

test: $(STAMP)
	$(VPY) -m pytest

# The unit tests only (layers against NumPy references, ingestion, configs,
# serving, CLI): no pipeline runs, no whole-model training.
test-fast: $(STAMP)
	$(VPY) -m pytest -m "not e2e and not slow"

clean:
	rm -rf runs .pytest_cache
