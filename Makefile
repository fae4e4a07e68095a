# imgclf — `make help` lists the targets. Everything runs from the project's own .venv.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(CURDIR)/$(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
RUN    := PATH="$(BIN):$$PATH" NO_MKDOCS_2_WARNING=1
UI_PORT ?= 5000
SERVE_PORT ?= 5001

.DEFAULT_GOAL := help
.PHONY: help install lock repro smoke test test-slow test-all lint deps docs docs-serve ui tensorboard compare serve server server-stop remote bench bench-chapter bench-resume bench-export bench-search bench-pack bench-storage clean

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
	$(BIN)/uv pip compile -q pyproject.toml --all-extras --universal --generate-hashes --python-version 3.11 \
		-o requirements.lock
	$(MAKE) install

repro: $(STAMP) ## run the pipeline (dvc repro) on params.yaml — offline default: mnist-sample
	$(RUN) dvc repro

# profiles/tiny.yaml's overrides as `-S key=value` arguments.
TINY = $$($(BIN)/python -c 'import yaml; print(" ".join(f"-S {k}={v}" for k, v in yaml.safe_load(open("profiles/tiny.yaml")).items()))')
smoke: $(STAMP) ## the whole pipeline on profiles/tiny.yaml (~2 min) as a DVC experiment, logged to MLflow experiment smoke: your workspace stays as it is
	$(RUN) dvc exp run --temp $(TINY) -S mlflow.experiment=smoke -S mlflow.registered_model=imgclf-smoke

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

compare: $(STAMP) ## the leaderboard of metrics/*.json with the MLflow runs behind it (python -m imgclf compare)
	$(RUN) python -m imgclf compare

serve: $(STAMP) ## serve models:/imgclf@champion (the report's best model) on http://127.0.0.1:5001 (SERVE_PORT=...)
	$(RUN) python -m imgclf serve --port $(SERVE_PORT)

# A team's tracking server: PostgreSQL + S3-compatible artifacts (moto locally) + mlflow server, state in
# STATE (.team/). AUTH=1: MLflow's basic-auth app. SERVER_HOST=<address>: listen beyond this machine (read
# docs/team.md first).
SERVER_HOST ?= 127.0.0.1
STATE ?= .team
server: $(STAMP) ## team tracking server on http://127.0.0.1:5002: PostgreSQL, artifacts on this disk (AUTH=1, SERVER_HOST=, TLS_CERT=, TLS_KEY=, ARTIFACTS=s3://..., STATE=)
	$(RUN) python -m imgclf server --host $(SERVER_HOST) --state $(STATE) $(if $(filter 1,$(AUTH)),--auth,) \
		$(if $(TLS_CERT),--tls-cert $(TLS_CERT) --tls-key $(TLS_KEY),) $(if $(ARTIFACTS),--artifacts $(ARTIFACTS),)

server-stop: $(STAMP) ## stop what `make server` started (STATE=...)
	$(RUN) python -m imgclf server-stop --state $(STATE)

remote: $(STAMP) ## the team's DVC remote as the default (here: the server's store; a teammate: URL=ssh://..., KEYFILE=; or URL=s3://...)
	$(RUN) python -m imgclf remote --state $(STATE) $(if $(URL),--url $(URL),) $(if $(KEYFILE),--keyfile $(KEYFILE),)

# The documentation site: docs/generate.py writes the generated pages (params, CLI, make targets, errors,
# results and performance tables), then MkDocs builds site/ and fails on any warning (a broken link, a
# page missing from the nav).
DOCS_PORT ?= 8000
docs: $(STAMP) ## generate the reference pages, then build the site into site/ (mkdocs build --strict)
	$(RUN) python docs/generate.py
	$(RUN) mkdocs build --strict

docs-serve: $(STAMP) ## the documentation site on http://127.0.0.1:8000 (DOCS_PORT=...), rebuilt on every edit
	$(RUN) python docs/generate.py
	$(RUN) mkdocs serve --strict --dev-addr 127.0.0.1:$(DOCS_PORT)

bench: $(STAMP) ## run the benchmarks, write benchmarks/results/*.json
	$(RUN) python benchmarks/run_all.py

bench-chapter: $(STAMP) ## the chapter workload stage by stage, float32 and bf16 (~30 min), into the summary
	$(RUN) python benchmarks/run_all.py --only chapter

bench-resume: $(STAMP) ## the chapter workload's finetune killed in its last epoch: finished resumed vs from the start (~12 min)
	$(RUN) python benchmarks/run_all.py --only resume

bench-export: $(STAMP) ## a fresh clone's dvc repro with every model stage exported (TFLite, ONNX): the champion's targets (~15 min)
	$(RUN) python benchmarks/run_all.py --only export

bench-search: $(STAMP) ## TPE against a grid of the same budget on the offline default: best accuracy after N trials (~30 min)
	$(RUN) python benchmarks/run_all.py --only search

bench-pack: $(STAMP) ## pack a 100,000- and a 1,000,000-file folder: pack time, disk, one changed image, no-op dvc repro (~25 min)
	$(RUN) python benchmarks/run_all.py --only pack

bench-storage: $(STAMP) ## data.storage shards on bench-pack's packs: download + split, disk, no-op repro; input throughput shards / files
	$(RUN) python benchmarks/run_all.py --only storage

clean: ## remove pipeline outputs (not the MLflow store)
	rm -rf data models metrics plots reports/*.png logs site
