# medfusion-bench: `make bench` and `make test` set up a local venv on first use.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | sha256sum | cut -c1-12)
DATASET ?= synthetic
RESULTS ?= results
ARGS ?=
export MLFLOW_DISABLE_TELEMETRY := true

.PHONY: setup bench tune test leaderboard ui clean-results help

help:
	@echo "make bench [DATASET=synthetic] [ARGS='--missing-rate 0.3']  run the benchmark grid"
	@echo "make test                                                   run the test suite"
	@echo "make leaderboard                                            rebuild leaderboards from MLflow"
	@echo "make ui                                                     open the MLflow UI on 127.0.0.1:5000"

# The venv is rebuilt only when pyproject.toml changes (the stamp carries its hash).
$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev,nifti]'
	@rm -f $(VENV)/.installed-*
	@touch $(STAMP)

setup: $(STAMP)

bench: $(STAMP)
	$(PY) -m benchmark.run --dataset $(DATASET) --results-dir $(RESULTS) $(ARGS)

tune: $(STAMP)
	$(PY) -m benchmark.tune --dataset $(DATASET) --results-dir $(RESULTS) $(ARGS)

test: $(STAMP)
	$(PY) -m pytest $(ARGS)

leaderboard: $(STAMP)
	$(PY) -m benchmark.leaderboard --results-dir $(RESULTS)

ui: $(STAMP)
	$(VENV)/bin/mlflow ui --backend-store-uri sqlite:///$(abspath $(RESULTS))/mlflow.db --host 127.0.0.1 --port 5000
