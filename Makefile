# Two commands do all set-up on a fresh machine: `make demo` and `make test`.
PYENV_PY ?= $(shell PYENV_VERSION=3.10.13 pyenv which python3.10 2>/dev/null || command -v python3.10)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export HF_HUB_OFFLINE ?= 1
export TRANSFORMERS_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false

.PHONY: install demo test bench lint clean

install: $(STAMP)

$(STAMP): pyproject.toml Makefile
	@test -n "$(PYENV_PY)" || { echo "Python 3.10 not found (lava-nc needs 3.10): install it, e.g. pyenv install 3.10.13"; exit 1; }
	test -x $(PY) || $(PYENV_PY) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[dev,lava-dl]"
	# lava-dl 0.6 pins torch<2.4/pytest<8/pillow<11, incompatible with transformers 5: no deps, see README
	$(PY) -m pip install -q --no-deps lava-dl==0.6.0
	$(PY) -c "import numpy, lava.magma, nir, snntorch, transformers; assert numpy.__version__ < '2'"
	touch $(STAMP)

demo: install
	$(VENV)/bin/spikebert demo --out runs/demo

test: install
	$(PY) -m pytest -q

bench: install
	$(PY) benchmarks/demo_pipeline.py

lint: install
	$(VENV)/bin/ruff check .

clean:
	rm -rf runs .pytest_cache
