# The README's two commands:
#   make run    — create .venv, install zipfrmt, run the main job
#   make test   — create .venv, install zipfrmt with its test extra, run the tests
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.zipfrmt-installed

.PHONY: run test install bench lint clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[test]"
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(VENV)/bin/zipfrmt report

test: $(STAMP)
	$(PY) -m pytest -q

bench: $(STAMP)
	$(PY) bench/spectra.py

lint: $(STAMP)
	$(VENV)/bin/ruff check zipfrmt tests bench

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis
