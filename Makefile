# Two commands do all the set-up on a fresh clone: `make run` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
EXTRAS ?= dev,tfhub,postgres,hf,ray,melody,passt,clap,openl3,muq
STAMP  := $(VENV)/.installed
OUT    ?= results/demo

.PHONY: run test bench lint figures venv clean-venv

venv: $(STAMP)

# Re-install only when pyproject.toml changes: a warm `make test` starts in seconds.
$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -e ".[$(EXTRAS)]"
	@# a peer for tests/test_peers.py: its code only (its pins would take numpy below 2)
	$(PY) -m pip install -q --disable-pip-version-check --no-deps frechet-audio-distance==0.3.4
	@touch $@

run: $(STAMP)
	$(VENV)/bin/musiclm-eval demo --out $(OUT)

# One BLAS thread unless the caller says otherwise: on the 2-core machine two threads per process spin-wait
# on busy cores (the interval-coverage test: 45 s with one, 90 s with two).
test: $(STAMP)
	OPENBLAS_NUM_THREADS=$${OPENBLAS_NUM_THREADS:-1} POT_BACKEND_DISABLE_TENSORFLOW=1 $(PY) -m pytest --durations=15 $(PYTEST_ARGS)

bench: $(STAMP)
	@mkdir -p benchmarks/results
	POT_BACKEND_DISABLE_TENSORFLOW=1 $(PY) -m pytest benchmarks/perf -p no:randomly \
		--benchmark-json=benchmarks/results/bench-$$(date -u +%Y%m%dT%H%M%SZ).json $(PYTEST_ARGS)

# Every number table in README.md and docs/ from its committed artifact (benchmarks/figures.py);
# after `make run`, FIGURES_ARGS="--from-demo results/demo" refreshes the demo table's artifact first.
figures: $(STAMP)
	$(PY) -m benchmarks.figures $(FIGURES_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check .

clean-venv:
	rm -rf $(VENV)
