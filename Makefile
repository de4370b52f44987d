# The README's two commands:
#   make run    — create .venv, install zipfrmt, run the main job
#   make test   — create .venv, install zipfrmt with its test extra, run the tests
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.zipfrmt-installed

.PHONY: run test install bench lint clean paper-pdf

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[test]"
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(VENV)/bin/zipfrmt reproduce --scale quick

# Test files run in parallel, each whole file on one worker (its module fixtures are built once); 7-13 min on
# 2 cores (6 min 40 s at the last measurement), about twice that serially.
test: $(STAMP)
	$(PY) -m pytest -q -n auto --maxprocesses 4 --dist loadfile

bench: $(STAMP)
	for b in bench/*.py; do $(PY) $$b || exit 1; done

# The PDF of paper/main.tex (run `make run` first: it writes the figures and tables main.tex includes).
paper-pdf:
	@if command -v latexmk >/dev/null 2>&1; then \
		cd paper && latexmk -pdf -interaction=nonstopmode -halt-on-error main.tex; \
	else \
		echo "make paper-pdf: latexmk is not installed. Install a TeX distribution with latexmk and pdfLaTeX"; \
		echo "  (Debian/Ubuntu: apt install latexmk texlive-latex-extra texlive-science; macOS: MacTeX),"; \
		echo "  then run make paper-pdf again. The figures and tables are already in paper/figures, paper/tables."; \
		exit 1; \
	fi

lint: $(STAMP)
	$(VENV)/bin/ruff check zipfrmt experiments tests bench

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis
