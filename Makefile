# Install into ./.venv, torch first. pip looks for TORCH on PyTorch's CPU index (TORCH_INDEX) beside
# PyPI and any local wheels: where that index is reachable (or a local CPU wheel is configured) the CPU
# build wins; where only PyPI is, Linux gets PyPI's CUDA build. The install prints which one it got.
# Another build: make install TORCH="torch==2.13.0" TORCH_INDEX=https://download.pytorch.org/whl/cu126
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
TORCH ?= torch==2.13.0
TORCH_INDEX ?= https://download.pytorch.org/whl/cpu
# pytest workers; test-all keeps each test file on one worker (--dist loadfile), so the multi-node
# fault tests, which share one file, run one after another
WORKERS ?= 2
PYTEST := $(VENV)/bin/pytest -q -n $(WORKERS)

.PHONY: install demo test test-all bench clean device-wheels

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml setup.py layergw/measures/_lap.c layergw/measures/_cg_step.c layergw/measures/_buffers.h
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q --retries 1 --extra-index-url "$(TORCH_INDEX)" "$(TORCH)"
	$(PY) -c 'import torch; c = torch.version.cuda; print("installed torch", torch.__version__, "(CPU build)" if c is None else f"(CUDA {c} build)")'
	$(PY) -m pip install -q -e ".[test]"
	touch $@

demo: install
	$(VENV)/bin/layergw run configs/demo.yaml

# the fast suite (minutes); test-all adds the subprocess, multi-node, fault and long tests (marked `long`)
test: install
	$(PYTEST) -m "not slow and not long"

test-all: install
	$(PYTEST) --dist loadfile -m "not slow"

bench: install
	$(VENV)/bin/layergw bench

clean:
	rm -rf $(VENV) runs

# Wheels the GPU machine's image lacks (its Python is 3.12; it has torch, numpy, scipy, pyarrow),
# carried there by scripts/device_check.sh: run(command="bash scripts/device_check.sh", carry=[".device"])
device-wheels: install
	$(PY) -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
		--platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
		-d .device/wheels "pot==$$($(PY) -c 'import ot; print(ot.__version__)')" \
		"pydantic==$$($(PY) -c 'import pydantic; print(pydantic.VERSION)')" \
		"pydantic-core==$$($(PY) -c 'import pydantic_core; print(pydantic_core.__version__)')" \
		annotated-types typing-inspection
