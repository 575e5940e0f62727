# The README's two commands: `make demo` (the main job) and `make test`. Both set everything up.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
SUITE  ?= scenarios/quick/suite.yaml
export PYTHON

.PHONY: setup setup-dev demo test lint bench bench-micro clean-data system-tools golden

# tools/setup_venv.sh checks the Python version (3.11+), makes the venv and installs torch: the CPU
# build from PyTorch's CPU index on a machine without a GPU (the pinned PyPI wheel when that index
# cannot be reached), or keeps the torch of HARNESS_PYTHON=/path/to/python (README "Set-up").
# Then the harness itself: the core for the main job, the dev extra (every optional package and
# the test tools) for the tests.
$(VENV)/.torch-stamp:
	tools/setup_venv.sh $(VENV)
	touch $@

$(VENV)/.core-stamp: pyproject.toml $(VENV)/.torch-stamp
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(VENV)/.dev-stamp: pyproject.toml $(VENV)/.core-stamp
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

setup: $(VENV)/.core-stamp

setup-dev: $(VENV)/.dev-stamp

# Main job: generate the quick dataset on local disk, build the frame cache, run the three
# scenarios of the quick suite (results in ./results/).
demo: setup
	$(BIN)/harness validate $(SUITE)
	$(BIN)/harness suite $(SUITE)

# ruff; mypy on harness/ (0 errors); import-linter's contracts in pyproject.toml (the floors import
# downwards only, no cycle inside a package, imports inside functions included).
lint: setup-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy harness
	$(BIN)/lint-imports --no-cache

# System tools the tests drive for real: Chromium (the HTML report), poppler (the PDF report), fio
# (the read ceiling of capacity searches), sysstat's iostat (the disk metrics are checked against
# it), installed with apt-get when missing and allowed (root); otherwise those tests say why they
# skip (the ceiling falls back to the harness's own reads).
# The network storage lab (harness lab) needs sshd, sshfs, node_exporter and iproute2 as well.
SYSTEM_TOOLS := chromium pdftoppm pdftotext fio iostat /usr/sbin/sshd ssh sshfs fusermount3 \
	prometheus-node-exporter ip tc
SYSTEM_PACKAGES := chromium poppler-utils fio sysstat openssh-server openssh-client sshfs fuse3 \
	prometheus-node-exporter iproute2
system-tools:
	@missing=""; for tool in $(SYSTEM_TOOLS); do command -v $$tool >/dev/null || missing=1; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	      $(SYSTEM_PACKAGES) >/dev/null; \
	  else echo "note: install $(SYSTEM_PACKAGES) to run all the tests"; fi; \
	fi

# Two at a time (pytest-xdist, a file's tests together) the tests that disturb no other: on two
# cores half their time is waiting (emulated steps, subprocesses starting, a disk); then, one at
# a time, those marked `alone` (pyproject.toml's markers). `python -m pytest` alone runs all,
# one at a time.
test: lint system-tools
	$(BIN)/python -m pytest -m "not alone" -n 2 --dist loadfile
	$(BIN)/python -m pytest -m alone

# Performance checks (ratios measured side by side in one run); needs ffmpeg, dd and fio. The
# performance floors live here, not in the tests: `make bench STRICT=1` fails on a missed one
# (each script's --strict), plain `make bench` reports them.
STRICT ?=
BENCH_FLAGS := $(if $(STRICT),--strict)
bench: setup-dev
	$(BIN)/python benchmarks/bench_data.py $(BENCH_FLAGS)
	$(BIN)/python benchmarks/bench_run.py $(BENCH_FLAGS)
	$(BIN)/python benchmarks/bench_report.py $(BENCH_FLAGS)
	$(BIN)/python benchmarks/bench_emulated.py $(BENCH_FLAGS)
	$(BIN)/python benchmarks/bench_step_timing.py $(BENCH_FLAGS)
	$(BIN)/python benchmarks/bench_dlio.py $(BENCH_FLAGS)
	$(BIN)/python benchmarks/bench_collect.py $(BENCH_FLAGS)
	$(BIN)/python benchmarks/bench_soak.py --minutes 1 $(BENCH_FLAGS)

# pytest-benchmark micro-benchmarks of one sample fetch per pipeline and one collector sample.
bench-micro: setup-dev
	$(BIN)/python -m pytest benchmarks/test_micro.py --benchmark-json=.benchmarks/micro.json

# Regenerate the golden run folders of the fast tests (tests/data/golden/) with the real CLI;
# after a change of the run folder format, commit them with it.
golden: setup-dev
	$(BIN)/python tests/data/make_golden.py

clean-data:
	rm -rf data
