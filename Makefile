# Two commands: `make run` (dashboard on http://localhost:8501) and `make test` (default suite;
# `make test-all` adds the slow tests).
# Variables: PYTHON=python3.12  GPU=1 (installs tensorflow[and-cuda])  HOST=0.0.0.0 PORT=8501
#            TEST_WORKERS=2 (processes for `make test`)
#            RAY=1 (installs Ray and runs jobs on a Ray cluster; implied by TLLAB_JOB_BACKEND=ray)
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
GPU ?= 0
HOST ?= localhost
PORT ?= 8501
TEST_WORKERS ?= 2
RAY ?= $(if $(filter ray,$(TLLAB_JOB_BACKEND)),1,0)
TF_VERSION := $(shell sed -n 's/^tensorflow==//p' requirements.txt)

.PHONY: run test test-all bench clean-venv

$(VENV)/.python-ok:
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11 or newer is required, found " + sys.version.split()[0])'
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	touch $@

$(VENV)/.runtime-installed: $(VENV)/.python-ok requirements.txt
	$(PY) -m pip install --quiet -r requirements.txt
ifeq ($(GPU),1)
	$(PY) -m pip install --quiet "tensorflow[and-cuda]==$(TF_VERSION)"
endif
	touch $@

$(VENV)/.ray-installed: $(VENV)/.runtime-installed requirements-ray.txt
	$(PY) -m pip install --quiet -r requirements-ray.txt
	touch $@

$(VENV)/.dev-installed: $(VENV)/.runtime-installed requirements-dev.txt requirements-ray.txt
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $@

ifeq ($(RAY),1)
run: $(VENV)/.runtime-installed $(VENV)/.ray-installed
	TLLAB_JOB_BACKEND=$${TLLAB_JOB_BACKEND:-ray} $(PY) -m streamlit run app.py --server.headless true --server.address $(HOST) --server.port $(PORT)
else
run: $(VENV)/.runtime-installed
	$(PY) -m streamlit run app.py --server.headless true --server.address $(HOST) --server.port $(PORT)
endif

# The default suite leaves out the tests marked slow (they train and export real runs) and runs
# in TEST_WORKERS processes (pytest-xdist, one test file per worker at a time). CI (.ci/run) runs
# `make test-all`: the default suite, then the slow tests one at a time (each uses every core).
test: $(VENV)/.dev-installed
	$(PY) -m pytest -m "not slow" -n $(TEST_WORKERS) --dist loadfile

test-all: test
	$(PY) -m pytest -m slow

# Runs every benchmark, then lists the ones that missed their target (exit 1 if any did).
bench: $(VENV)/.dev-installed
	@failed=""; for script in bench/bench_*.py; do echo "== $$script"; $(PY) $$script || failed="$$failed $$script"; done; \
	if [ -n "$$failed" ]; then echo "Benchmarks that missed their target:$$failed"; exit 1; fi; \
	echo "Every benchmark met its target."

clean-venv:
	rm -rf $(VENV)
