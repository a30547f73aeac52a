# Install into ./.venv with the CPU torch wheel pinned first, so that no CUDA build is pulled in.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
TORCH ?= torch==2.13.0

.PHONY: install demo test bench clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH)"
	$(PY) -m pip install -q -e ".[test]"
	touch $@

demo: install
	$(VENV)/bin/layergw run configs/demo.yaml

test: install
	$(VENV)/bin/pytest -q

bench: install
	$(VENV)/bin/layergw bench

clean:
	rm -rf $(VENV) runs
