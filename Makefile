# medfusion-bench: `make bench` and `make test` set up a local venv on first use.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
HASH := $(shell cat pyproject.toml | sha256sum | cut -c1-12)
STAMP := $(VENV)/.installed-$(HASH)
TEST_STAMP := $(VENV)/.installed-test-$(HASH)
DATASET ?= synthetic
RESULTS ?= results
ARGS ?=
export MLFLOW_DISABLE_TELEMETRY := true
export MLFLOW_SERVER_ENABLE_JOB_EXECUTION := false
export MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT := true

.PHONY: setup bench bench-tuned scenarios tune test leaderboard ui server help

help:
	@echo "make bench [DATASET=synthetic] [ARGS='--missing-rate 0.3']  run the benchmark grid"
	@echo "make scenarios [ARGS='--suite-entries interaction']         run the scenario suite -> results/scenarios/"
	@echo "make bench-tuned [TRIALS=8]                                  tune every method (same budget), evaluate the grid"
	@echo "make test                                                   run the test suite"
	@echo "make leaderboard                                            rebuild leaderboards from MLflow"
	@echo "make tune [DATASET=synthetic] ARGS='--methods late_fusion --trials 20'  equal-budget Optuna tuning"
	@echo "make ui                                                     open the MLflow UI on 127.0.0.1:5000"
	@echo "make server                                                 MLflow tracking server on 127.0.0.1:5001"

# The venv is (re)installed only when pyproject.toml changes (the stamps carry its hash).
# `make bench` needs the base install; `make test` adds the dev, nifti and ray extras.
$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e .
	@rm -f $(VENV)/.installed-*
	@touch $(STAMP)

$(TEST_STAMP): $(STAMP)
	$(PY) -m pip install --quiet -e '.[dev,nifti,ray]'
	@touch $(TEST_STAMP)

setup: $(STAMP)

bench: $(STAMP)
	$(PY) -m benchmark.run --dataset $(DATASET) --results-dir $(RESULTS) $(ARGS)

# Every registered method x the synthetic scenarios (configs/suites/scenarios.yaml); its own store
# results/scenarios/mlflow.db, per-entry leaderboards and summary.md|csv|html next to it.
scenarios: $(STAMP)
	$(PY) -m benchmark.run --suite scenarios $(ARGS)

# The tuned headline (README): every method of the published grid (METHODS; the MDC ablations are
# in the scenario suite) tuned with the same Optuna budget -- TRIALS trials x TUNING_SEEDS x the
# shared max_epochs/patience, at configs/tune.yaml's rate -- then the tuned parameters evaluated
# over the whole grid on the evaluation seeds (tuned=true runs next to the default ones).
TRIALS ?= 8
TUNING_SEEDS ?= 100
METHODS ?= tabular_sklearn,image_only,tabular_only,early_fusion,late_fusion,cfcml,cmml,mdc,daft,shaspec,max_fusion,mul_fusion
bench-tuned: $(STAMP)
	$(PY) -m benchmark.tune --dataset $(DATASET) --results-dir $(RESULTS) --methods $(METHODS) --trials $(TRIALS) --tuning-seeds $(TUNING_SEEDS) $(ARGS)
	$(PY) -m benchmark.run --dataset $(DATASET) --results-dir $(RESULTS) --methods $(METHODS) --tuned --workers 2 $(ARGS)

tune: $(STAMP)
	$(PY) -m benchmark.tune --dataset $(DATASET) --results-dir $(RESULTS) $(ARGS)

test: $(TEST_STAMP)
	$(PY) -m pytest $(ARGS)

leaderboard: $(STAMP)
	$(PY) -m benchmark.leaderboard --results-dir $(RESULTS)

ui: $(STAMP)
	$(VENV)/bin/mlflow ui --backend-store-uri sqlite:///$(abspath $(RESULTS))/mlflow.db --host 127.0.0.1 --port 5000

server: $(STAMP)
	$(PY) -m benchmark.server --results-dir $(RESULTS)
