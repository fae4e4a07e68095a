# imgclf — `make help` lists the targets. Everything runs from the project's own .venv.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(CURDIR)/$(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
RUN    := PATH="$(BIN):$$PATH"
UI_PORT ?= 5000

.DEFAULT_GOAL := help
.PHONY: help install repro test test-slow test-all lint deps ui compare bench clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

install: $(STAMP) ## create .venv and install imgclf with its dev tools

repro: $(STAMP) ## run the pipeline (dvc repro) on params.yaml — offline default: mnist-sample
	$(RUN) dvc repro

test: $(STAMP) ## run the test suite (slow tests excluded)
	$(RUN) python -m pytest -m "not slow" -q

test-slow: $(STAMP) ## run only the slow tests (whole pipelines in temp DVC projects, queued experiments)
	$(RUN) python -m pytest -m slow -q

test-all: $(STAMP) ## run every test, slow ones included
	$(RUN) python -m pytest -q

lint: $(STAMP) ## ruff on the package, stages, tests, benchmarks and CI scripts
	$(RUN) ruff check src stages tests benchmarks .ci

deps: $(STAMP) ## rewrite dvc.yaml's code deps from what each stage imports
	$(RUN) python -m imgclf deps --write

ui: $(STAMP) ## MLflow UI on http://127.0.0.1:5000 (UI_PORT=...) against the project's store
	$(RUN) mlflow ui --backend-store-uri sqlite:///$(CURDIR)/mlflow.db \
		--default-artifact-root $(CURDIR)/mlartifacts --host 127.0.0.1 --port $(UI_PORT)

compare: $(STAMP) ## leaderboard straight from MLflow (python -m imgclf compare)
	$(RUN) python -m imgclf compare

bench: $(STAMP) ## run the benchmarks, write benchmarks/results/*.json
	$(RUN) python benchmarks/run_all.py

clean: ## remove pipeline outputs (not the MLflow store)
	rm -rf data models metrics plots reports/*.png logs
