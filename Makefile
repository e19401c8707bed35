# Two commands for a newcomer:  make demo   and   make test
# Both create .venv (pip, pinned versions from pyproject.toml) when it is missing.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
CORES  ?= 2
STAMP  := $(VENV)/.installed

.PHONY: demo test lint report dag clean install docs

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --disable-pip-version-check -q -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m galmet.runlock   # a lock left by a killed run, when no Snakemake runs here
	$(BIN)/snakemake --cores $(CORES) --resources gpu=1
	$(BIN)/snakemake --cores 1 --report results/report.html
	@echo "Done: results/summary.json, results/figures/, results/report.html"

test: $(STAMP)
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check src tests workflow benchmarks
	$(BIN)/snakemake --lint
	$(BIN)/snakefmt --check Snakefile workflow/

docs: $(STAMP)   # the documentation site, warnings as errors: docs/_build/html/index.html
	$(BIN)/sphinx-build -W --keep-going -b html docs docs/_build/html

report: $(STAMP)   # the HTML report of the last run: results/report.html
	$(BIN)/snakemake --cores 1 --report results/report.html

dag: $(STAMP)
	$(BIN)/snakemake --rulegraph | dot -Tsvg > docs/rulegraph.svg

clean:
	rm -rf results .snakemake
