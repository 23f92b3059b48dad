# kneeload: the two README commands are `make report` and `make test`.
# Everything installs into .venv from PyPI, pinned by requirements/constraints.txt.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
KNEELOAD := $(VENV)/bin/kneeload
CONSTRAINTS := requirements/constraints.txt
STAMP := $(VENV)/.installed
KERNEL := kneeload

DATASET ?= demo
RAW := data/raw/$(DATASET)
PROCESSED := data/processed/$(DATASET)
REPORTS := reports/$(DATASET)
# Rebuild when any file or sub-folder under the raw folder (xlsx, diaries, export folders,
# activity files) is newer than the panel; folders count too, so a deleted file also
# triggers a rebuild. find decides, so no file name is ever parsed by make (spaces, ':', '#').
RAW_CHANGED := $(shell [ -e $(PROCESSED)/panel.parquet ] && \
  find $(RAW) -newer $(PROCESSED)/panel.parquet -print -quit 2>/dev/null)
# Options passed through: `make report DATASET=x BUILD_OPTS="--timezone Europe/Oslo"
# PARAMS="exposures=km_7d,rest_days_7d min_cohort_size=8"` (each PARAMS word is one --param).
BUILD_OPTS ?=
PARAMS ?=
SRC := $(shell find src -name '*.py') pyproject.toml

.PHONY: FORCE setup report build test test-fast test-notebooks notebooks screenshots lab lock lint bench clean help

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-16s %s\n", $$1, $$2}'

$(VENV)/bin/python:
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "kneeload needs Python 3.11+, found " + sys.version' 
	$(PYTHON) -m venv $(VENV)

# Reinstall only when the project metadata or the pins change.
$(STAMP): $(VENV)/bin/python pyproject.toml $(CONSTRAINTS)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c $(CONSTRAINTS) -e '.[dev]'
	$(PY) -m ipykernel install --sys-prefix --name $(KERNEL) --display-name 'Python (kneeload)' >/dev/null
	@touch $@

# The package's bytecode, compiled whenever a source changed: an editable install writes
# none, and with PYTHONDONTWRITEBYTECODE set (as on CI) every kneeload process would
# otherwise compile the package again (0.05-0.1 s a process; bench/bench_build.py).
# checked-hash: Python compares each file's hash, not its mtime, so an edit is never
# missed (same size in the same second). An order-only prerequisite below: it never
# makes the panel out of date by itself.
BYTECODE := $(VENV)/.bytecode
$(BYTECODE): $(STAMP) $(SRC)
	$(PY) -m compileall -q --invalidation-mode checked-hash src/analysis
	@touch $@

setup: $(STAMP) $(BYTECODE)  ## create .venv and install kneeload with its extras (pinned)

$(PROCESSED)/panel.parquet: $(STAMP) $(SRC) $(if $(RAW_CHANGED),FORCE) | $(BYTECODE)
	$(KNEELOAD) build $(RAW) --out $(PROCESSED) $(BUILD_OPTS)

build: $(PROCESSED)/panel.parquet  ## raw -> processed for DATASET (default: demo)

report: build  ## the main job: demo raw data -> processed -> reports/demo/index.html
	$(KNEELOAD) report $(PROCESSED) --out $(REPORTS) --changed-only $(foreach p,$(PARAMS),--param $(p))
	@echo "open $(REPORTS)/index.html"

# Package tests on TEST_WORKERS processes (pytest-xdist): most tests use one core, so two
# workers on a 2-core VM took the package tests from 9m34 to 5m42 (README).
# loadgroup: the browser tests share one worker (one JupyterLab server, one Chromium
# install); TEST_WORKERS=0 runs them all in this process.
TEST_WORKERS ?= 2
PYTEST_WORKERS := -n $(TEST_WORKERS) --dist loadgroup

test: build  ## the package tests, then the notebooks under nbval
	$(PY) -m pytest tests $(PYTEST_WORKERS)
	$(PY) -m pytest --nbval --nbval-current-env --nbval-sanitize-with notebooks/sanitize.cfg -p no:randomly notebooks

test-fast: $(STAMP) | $(BYTECODE)  ## package tests without the slow end-to-end ones
	$(PY) -m pytest tests -m 'not slow and not browser' $(PYTEST_WORKERS)

# The papermill template (cohort_report) keeps no stored outputs; nbval only checks that it runs.
ANALYSIS_NOTEBOOKS := $(filter-out notebooks/cohort_report.ipynb,$(wildcard notebooks/*.ipynb))

# The kernel talks over IPC (Unix sockets in a private temporary folder, removed after), as
# the report workers' kernels do: over TCP ipykernel prints "Kernel is running over TCP
# without encryption" at every start (docs/reports.md).
notebooks: build  ## re-execute the analysis notebooks in place (when a change of output is intended)
	$(VENV)/bin/jupytext --sync notebooks/*.ipynb
	sockets=$$(mktemp -d "$${TMPDIR:-/tmp}/kl-nb-XXXXXX") && cd notebooks && \
	  { ../$(VENV)/bin/jupyter nbconvert --to notebook --execute --inplace \
	  --ExecutePreprocessor.kernel_name=$(KERNEL) --ExecutePreprocessor.timeout=600 \
	  --ExecutePreprocessor.record_timing=False \
	  --KernelManager.transport=ipc --KernelManager.ip="$$sockets/kernel" \
	  $(notdir $(ANALYSIS_NOTEBOOKS)); status=$$?; rm -rf "$$sockets"; exit $$status; }
	$(VENV)/bin/jupytext --sync notebooks/*.ipynb

screenshots: build  ## refresh docs/img/index.png and cohort_report.png (demo, headless Chromium)
	$(PY) scripts/screenshots.py

lab: build  ## JupyterLab with the registered kneeload kernel
	$(VENV)/bin/jupyter lab notebooks $(if $(filter 0,$(shell id -u)),--allow-root)

lock:  ## refresh requirements/constraints.txt from a fresh resolve (review the diff, then commit)
	rm -rf build/lockenv && $(PYTHON) -m venv build/lockenv
	build/lockenv/bin/python -m pip install --quiet --upgrade pip
	build/lockenv/bin/python -m pip install --quiet -e '.[dev]'
	build/lockenv/bin/python -m pip freeze --exclude-editable | grep -v '^kneeload' > $(CONSTRAINTS)
	rm -rf build/lockenv
	@echo "wrote $(CONSTRAINTS)"

lint: $(STAMP)  ## ruff on the package, tests, benchmarks and notebooks
	$(VENV)/bin/ruff check src tests bench notebooks

bench: build  ## benchmarks (long; not part of make test)
	$(PY) bench/run_all.py

clean:  ## remove generated outputs (keeps .venv)
	rm -rf data/processed/* reports .pytest_cache
	touch data/processed/.gitkeep

# A prerequisite that is never up to date: forces the panel rebuild when raw data changed.
FORCE:
