# The README's two commands: `make demo` (the main job) and `make test`. Both set everything up.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
SUITE  ?= scenarios/quick/suite.yaml

.PHONY: setup demo test lint bench bench-micro clean-data system-tools golden

# torch is installed first with an exact pin: its CPU build; a looser range would pull a
# multi-GB CUDA build on a machine without a GPU.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

setup: $(STAMP)

# Main job: generate the quick dataset on local disk, build the frame cache, run the three
# scenarios of the quick suite (results in ./results/).
demo: setup
	$(BIN)/harness validate $(SUITE)
	$(BIN)/harness suite $(SUITE)

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# System tools the tests drive for real: Chromium (the HTML report), poppler (the PDF report), fio
# (the read ceiling of capacity searches), installed with apt-get when missing and allowed (root);
# otherwise those tests say why they skip (the ceiling falls back to the harness's own reads).
SYSTEM_TOOLS := chromium pdftoppm pdftotext fio
system-tools:
	@missing=""; for tool in $(SYSTEM_TOOLS); do command -v $$tool >/dev/null || missing=1; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	      chromium poppler-utils fio >/dev/null; \
	  else echo "note: install chromium and poppler-utils to run the report tests"; fi; \
	fi

test: lint system-tools
	$(BIN)/python -m pytest

# Performance checks (ratios measured side by side in one run); needs ffmpeg, dd and fio.
bench: setup
	$(BIN)/python benchmarks/bench_data.py
	$(BIN)/python benchmarks/bench_run.py
	$(BIN)/python benchmarks/bench_report.py
	$(BIN)/python benchmarks/bench_emulated.py
	$(BIN)/python benchmarks/bench_dlio.py
	$(BIN)/python benchmarks/bench_collect.py --strict

# pytest-benchmark micro-benchmarks of one sample fetch per pipeline and one collector sample.
bench-micro: setup
	$(BIN)/python -m pytest benchmarks/test_micro.py --benchmark-json=.benchmarks/micro.json

# Regenerate the golden run folders of the fast tests (tests/data/golden/) with the real CLI;
# after a change of the run folder format, commit them with it.
golden: setup
	$(BIN)/python tests/data/make_golden.py

clean-data:
	rm -rf data
