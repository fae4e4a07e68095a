# imgclf — `make help` lists the targets. Everything runs from the project's own .venv.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(CURDIR)/$(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
RUN    := PATH="$(BIN):$$PATH"
UI_PORT ?= 5000
SERVE_PORT ?= 5001

.DEFAULT_GOAL := help
.PHONY: help install lock repro test test-slow test-all lint deps ui tensorboard compare serve server server-stop remote bench bench-chapter clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

# The environment is locked: requirements.lock pins every package (with hashes), resolved from
# pyproject.toml by `make lock`. uv installs it; it is itself pinned in the lock. --compile-bytecode:
# uv does not write .pyc files by default, and with PYTHONDONTWRITEBYTECODE set (as on this project's machines)
# Python never caches them either: every stage process would then compile TensorFlow, Keras and MLflow
# from source at start-up.
UV_VERSION := $(shell sed -n 's/^uv==\([0-9.]*\).*/\1/p' requirements.lock)

$(STAMP): pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q uv==$(UV_VERSION)
	$(BIN)/uv pip sync -q --compile-bytecode --python $(BIN)/python requirements.lock
	$(BIN)/uv pip install -q --python $(BIN)/python --no-deps -e .
	touch $(STAMP)

install: $(STAMP) ## create .venv with exactly requirements.lock, and imgclf (editable)

lock: $(STAMP) ## re-resolve requirements.lock from pyproject.toml (every platform, Python 3.11), then reinstall
	$(BIN)/uv pip compile -q pyproject.toml --extra dev --universal --generate-hashes --python-version 3.11 \
		-o requirements.lock
	$(MAKE) install

repro: $(STAMP) ## run the pipeline (dvc repro) on params.yaml — offline default: mnist-sample
	$(RUN) dvc repro

# pytest-xdist: one worker per core (2 in CI), a test file per worker at a time, so a file's
# module-scoped servers and pipelines are made once.
PYTEST_JOBS ?= 2
XDIST := -n $(PYTEST_JOBS) --dist loadfile

test: $(STAMP) ## run the test suite (slow tests excluded), PYTEST_JOBS=2 workers
	$(RUN) python -m pytest -m "not slow" -q $(XDIST)

test-slow: $(STAMP) ## run only the slow tests (whole pipelines in temp DVC projects, queued experiments)
	$(RUN) python -m pytest -m slow -q $(XDIST)

test-all: $(STAMP) ## run every test, slow ones included
	$(RUN) python -m pytest -q $(XDIST)

lint: $(STAMP) ## ruff on the package, stages, tests, benchmarks and CI scripts
	$(RUN) ruff check src stages tests benchmarks .ci

deps: $(STAMP) ## rewrite dvc.yaml's code deps from what each stage imports
	$(RUN) python -m imgclf deps --write

ui: $(STAMP) ## MLflow UI on http://127.0.0.1:5000 (UI_PORT=...) against the project's store
	$(RUN) mlflow ui --backend-store-uri sqlite:///$(CURDIR)/mlflow.db \
		--default-artifact-root $(CURDIR)/mlartifacts --host 127.0.0.1 --port $(UI_PORT)

TB_PORT ?= 6006
tensorboard: $(STAMP) ## TensorBoard on http://127.0.0.1:6006 (TB_PORT=...) over logs/: the last run of each stage
	$(RUN) tensorboard --logdir $(CURDIR)/logs --host 127.0.0.1 --port $(TB_PORT)

compare: $(STAMP) ## leaderboard straight from MLflow (python -m imgclf compare)
	$(RUN) python -m imgclf compare

serve: $(STAMP) ## serve models:/imgclf@champion (the report's best model) on http://127.0.0.1:5001 (SERVE_PORT=...)
	$(RUN) python -m imgclf serve --port $(SERVE_PORT)

# A team's tracking server: PostgreSQL + S3-compatible artifacts (moto locally) + mlflow server, state in .team/.
# AUTH=1: MLflow's basic-auth app. HOST=<address>: listen beyond this machine (read the README first).
SERVER_HOST ?= 127.0.0.1
server: $(STAMP) ## team tracking server on http://127.0.0.1:5002: PostgreSQL backend, S3 artifacts (AUTH=1, SERVER_HOST=...)
	$(RUN) python -m imgclf server --host $(SERVER_HOST) $(if $(filter 1,$(AUTH)),--auth,)

server-stop: $(STAMP) ## stop what `make server` started
	$(RUN) python -m imgclf server-stop

remote: $(STAMP) ## make the team server's S3 bucket the default DVC remote (then dvc push / dvc pull)
	$(RUN) python -m imgclf remote

bench: $(STAMP) ## run the benchmarks, write benchmarks/results/*.json
	$(RUN) python benchmarks/run_all.py

bench-chapter: $(STAMP) ## the chapter workload stage by stage, float32 and bf16 (~30 min), into the summary
	$(RUN) python benchmarks/run_all.py --only chapter

clean: ## remove pipeline outputs (not the MLflow store)
	rm -rf data models metrics plots reports/*.png logs
