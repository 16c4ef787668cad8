# Two commands do all the set-up on a fresh clone: `make run` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
EXTRAS ?= dev,tfhub,postgres,hf,ray,melody,controls,mad,passt,clap,openl3,muq,peers
STAMP  := $(VENV)/.installed
OUT    ?= results/demo

.PHONY: run test bench lint figures venv clean-venv

venv: $(STAMP)

# Re-install only when pyproject.toml changes: a warm `make test` starts in seconds.
$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -e ".[$(EXTRAS)]"
	@# peers for tests/test_peers.py, their code only (their pins would take numpy below 2, torch to 2.1,
	@# transformers below 5); and transformers 4 beside the venv for muq's parity check (tests/test_loaders_muq.py)
	$(PY) -m pip install -q --disable-pip-version-check --no-deps frechet-audio-distance==0.3.4 fadtk==1.1.0 \
		audiocraft==1.3.0
	$(PY) -m pip install -q --disable-pip-version-check --no-deps --target $(VENV)/peers/transformers4 --upgrade \
		transformers==4.57.3 huggingface_hub==0.36.0 tokenizers==0.22.1
	@touch $@

run: $(STAMP)
	$(VENV)/bin/musiclm-eval demo --run-dir $(OUT)

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
