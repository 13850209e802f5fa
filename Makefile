# seqshards developer targets. Every target creates .venv on first use.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp
# The Beam portable worker pool starts plain `python`: keep the venv first on PATH.
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
export TF_CPP_MIN_LOG_LEVEL ?= 2

.PHONY: help install test test-fast parity run example example-static bench bench-quick lint fmt clean

help:  ## List the targets.
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

$(STAMP): setup.py
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	$(PY) -m pip install -e '.[test]'
	touch $(STAMP)

install: $(STAMP)  ## Create .venv and install seqshards with its test extras.

test: $(STAMP)  ## Run the whole test suite (what CI runs).
	$(PY) -m pytest -q

test-fast: $(STAMP)  ## Run the tests not marked slow.
	$(PY) -m pytest -q -m "not slow"

parity: $(STAMP)  ## Run only the parity tests against tf_keras.
	$(PY) -m pytest -q -m parity

run: $(STAMP)  ## Materialize data/ into out/ and print a summary.
	$(PY) -m pipeline --input 'data/sample-*.tfrecord' --columns data/columns.yaml \
	    --output out --overwrite --runner DirectRunner

out/metadata.json: $(STAMP) data/columns.yaml $(wildcard data/sample-*.tfrecord)
	$(MAKE) run

example: out/metadata.json  ## Train the example RNN on out/ (runs `make run` first if needed).
	$(PY) examples/train_rnn.py

out_static/metadata.json: $(STAMP) data/columns.yaml $(wildcard data/sample-*.tfrecord)
	$(PY) -m pipeline --input 'data/sample-*.tfrecord' --columns data/columns.yaml \
	    --output out_static --overwrite --engine tfdata --static_shapes --max_buckets 8

example-static: out_static/metadata.json  ## Train a jit_compile=True Keras model on static-shape shards (out_static/).
	$(PY) examples/train_static.py --data out_static

bench: $(STAMP)  ## Benchmarks, side by side with the stock-TensorFlow reference.
	$(PY) bench/bench_features.py
	$(PY) bench/run_bench.py
	$(PY) bench/static_shapes_bench.py

bench-quick: $(STAMP)  ## A shorter `make bench` (20k only, a few minutes).
	$(PY) bench/bench_features.py --quick
	$(PY) bench/run_bench.py --quick
	$(PY) bench/static_shapes_bench.py --quick

lint: $(STAMP)  ## ruff check (88 columns, isort).
	$(VENV)/bin/ruff check transforms pipeline tests bench data examples

fmt: $(STAMP)  ## ruff format + import sorting.
	$(VENV)/bin/ruff check --select I --fix transforms pipeline tests bench data examples
	$(VENV)/bin/ruff format transforms pipeline tests bench data examples

clean:  ## Remove the venv and generated output.
	rm -rf $(VENV) out out_static *.egg-info .pytest_cache
