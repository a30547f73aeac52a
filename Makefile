# Install into ./.venv with the CPU torch wheel pinned first, so that no CUDA build is pulled in.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
TORCH ?= torch==2.13.0
# pytest workers; tests that share a cluster fixture stay on one worker (--dist loadgroup)
WORKERS ?= 2
PYTEST := $(VENV)/bin/pytest -q -n $(WORKERS) --dist loadgroup

.PHONY: install demo test test-all bench clean device-wheels

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH)"
	$(PY) -m pip install -q -e ".[test]"
	touch $@

demo: install
	$(VENV)/bin/layergw run configs/demo.yaml

# the fast suite (minutes); test-all adds the subprocess, multi-node, fault and long tests (marked `long`)
test: install
	$(PYTEST) -m "not slow and not long"

test-all: install
	$(PYTEST) -m "not slow"

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
