# Make targets for the MLOps template. `make help` lists them.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
INDEX_CACHE := $(VENV)/.index-cached
# The installer of the lock, in a folder of its own (uv sync leaves in .venv only what the
# lock holds); the same version is a dev dependency in pyproject.toml.
UV_VERSION := 0.13.8
TOOLS := .tools
UV ?= $(TOOLS)/bin/uv
# Python comes from this machine, never downloaded by uv.
export UV_PYTHON_DOWNLOADS := never
# Locks and Azure ML conda files ([tool.mlops.azureml-environments] in pyproject.toml); it
# needs only the standard library, so it runs before the environment exists.
LOCKS := $(PYTHON) -m ml_service.util.lock_environments --uv $(UV) --python $(PYTHON)
# Test worker processes (pytest-xdist); many tests start processes of their own.
TEST_WORKERS ?= 2
# The SDK v2 steps' environment (its own lock: MLflow 3.15, pandas 2), for its tests.
V2_ENVIRONMENT := diabetes_regression/azureml_v2_environment
V2_VENV := .venv-v2
V2_STAMP := $(V2_VENV)/.installed
# The web app's browser tests drive the OS's Chromium and its driver (Debian's chromium and
# chromium-driver packages), never a browser downloaded at run time.
CHROMEDRIVER := /usr/bin/chromedriver
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)
BROWSER_PACKAGES := chromium chromium-driver

.DEFAULT_GOAL := help
.PHONY: help run app test test-quick test-v2-environment lock check-lock lint docs doc-pictures azure-validate monitor benchmark benchmark-scoring benchmark-monitor batchscore benchmark-batchscore clean

help: ## List the targets
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F ':.*## ' '{printf "  make %-20s %s\n", $$1, $$2}'

$(UV):
	@command -v $(PYTHON) >/dev/null || { echo "error: $(PYTHON) not found; install Python 3.11 (azureml-pipeline-steps does not install on 3.12) or pass PYTHON=/path/to/python3.11" >&2; exit 1; }
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' || { echo "error: $(PYTHON) is not Python 3.11; pass PYTHON=/path/to/python3.11" >&2; exit 1; }
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/python -m pip install --quiet uv==$(UV_VERSION)

# Installs exactly what uv.lock holds (no resolution), the project itself editable, compiled
# to bytecode as pip does: where PYTHONDONTWRITEBYTECODE is set, nothing else would write it,
# and every process would compile MLflow, pandas and scikit-learn again (measured: make test
# 16:03 instead of 11:10).
$(STAMP): pyproject.toml uv.lock | $(UV)
	@$(MAKE) --no-print-directory check-lock
	$(UV) sync --locked --extra dev --python $(PYTHON) --compile-bytecode --quiet
	@touch $(STAMP)

run: $(STAMP) ## Run the whole loop locally: train, evaluate, register, deploy, smoke test (DATA=file.csv)
	$(BIN)/python -m ml_service.local_loop $(if $(DATA),--data "$(DATA)")

app: $(STAMP) ## Serve the web app against the local deployment of the production model (PORT=8000)
	$(BIN)/python -m ml_service.util.run_webapp --port $(or $(PORT),8000)

test: $(STAMP) $(INDEX_CACHE) $(CHROMEDRIVER) ## Run the tests with coverage, on TEST_WORKERS processes (default 2)
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist load --durations=15 \
		--cov --cov-report=term --cov-report=xml

test-quick: $(STAMP) ## The unit tests only, for the inner loop: no process, server, kill or copy
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist load -m "not integration and not process" -q

$(CHROMEDRIVER):
	@command -v apt-get >/dev/null || { echo "error: the browser tests need /usr/bin/chromium and $(CHROMEDRIVER): install your OS's Chromium and ChromeDriver packages" >&2; exit 1; }
	$(SUDO) apt-get install -y -q $(BROWSER_PACKAGES) || { $(SUDO) apt-get update -q && $(SUDO) apt-get install -y -q $(BROWSER_PACKAGES); }

# The v2 steps' lock, its test group, and the project's code (not its dependencies).
$(V2_STAMP): $(V2_ENVIRONMENT)/uv.lock pyproject.toml | $(UV)
	UV_PROJECT_ENVIRONMENT=$(abspath $(V2_VENV)) $(UV) sync --locked --project $(V2_ENVIRONMENT) --group test --python $(PYTHON) --compile-bytecode --quiet
	$(UV) pip install --python $(V2_VENV)/bin/python --no-deps --quiet -e .
	@touch $@

test-v2-environment: $(V2_STAMP) ## The steps' unit tests and the v2 rehearsal in the SDK v2 steps' environment (its MLflow and pandas)
	$(V2_VENV)/bin/python -m pytest -n $(TEST_WORKERS) --dist load -q -m "not integration and not process" \
		tests/diabetes_regression tests/ml_service/backends tests/ml_service/pipelines \
		--ignore=tests/diabetes_regression/scoring
	$(V2_VENV)/bin/python -m pytest -q tests/ml_service/backends/test_azureml_v2_rehearsal.py

check-lock: | $(UV) ## Refuse locks that their pyproject.toml no longer matches, and conda files that differ from their lock
	@$(LOCKS) check

lock: | $(UV) ## After editing dependencies in a pyproject.toml: update the locks and the Azure ML conda files
	@$(LOCKS) lock

# The package index's pages of every locked package, in uv's cache (a few seconds online):
# the test that adds a dependency with `make lock` in a copy of the project runs offline.
$(INDEX_CACHE): uv.lock | $(UV) $(STAMP)
	@$(LOCKS) cache
	@touch $@

lint: $(STAMP) ## Lint with flake8 (blocks the build)
	$(BIN)/python -m flake8

docs: $(STAMP) ## Write docs/configuration.md from the parameters and variables described in the code
	$(BIN)/python -m ml_service.util.config_reference

azure-validate: $(STAMP) ## Build and validate every Azure ML object offline (SDK v1 and v2), one line each
	$(BIN)/python -m ml_service.util.azure_validate

monitor: $(STAMP) ## Compare what the local service collected with its training data; exit 3 on drift (SINCE= UNTIL= SERVICE= REGISTER=1 RETRAIN=1)
	$(BIN)/python -m ml_service.monitoring.monitor $(if $(SERVICE),--service "$(SERVICE)") $(if $(SINCE),--since "$(SINCE)") $(if $(UNTIL),--until "$(UNTIL)") $(if $(REGISTER),--register) $(if $(RETRAIN),--retrain)

benchmark: $(STAMP) ## Time the local loop and each step against a one-process baseline
	$(BIN)/python -m benchmarks.benchmark_local_loop

benchmark-scoring: $(STAMP) ## Requests/s of score.py vs an MLOpsPython-style score.py in azmlinfsrv
	$(BIN)/python -m benchmarks.benchmark_scoring

batchscore: $(STAMP) ## Score a CSV with the production model on all cores (INPUT=file.csv OUTPUT=scored.csv)
	$(BIN)/python -m ml_service.pipelines.run_parallel_batchscore_pipeline $(if $(INPUT),--input $(INPUT)) $(if $(OUTPUT),--output $(OUTPUT))

benchmark-monitor: $(STAMP) ## The monitor's false alarms and detections over seeded windows, per window size
	$(BIN)/python -m benchmarks.benchmark_monitor

benchmark-batchscore: $(STAMP) ## Time the local batch scorer on 1M rows against a one-process baseline
	$(BIN)/python -m benchmarks.benchmark_batchscore

doc-pictures: $(STAMP) ## Draw docs/images' evaluation and drift pictures from a real run of the loop and the monitor
	$(BIN)/python -m ml_service.util.doc_pictures

clean: ## Remove the local store (.mlops/); keeps the environment
	rm -rf .mlops
