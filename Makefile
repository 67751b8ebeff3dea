# Quick start: `make demo`, `make test`. Both create .venv and install into it when needed; a stamp file makes the
# second run skip the install. GPU users: create .venv with a CUDA build of torch/torchvision first (see README);
# an existing torch in .venv is kept.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.ndr_plugin_installed
TORCH_SPEC ?= torch==2.14.1 torchvision==0.29.1
PYTEST_ARGS ?=

.PHONY: demo test install benchmark clean-venv

install: $(STAMP)

$(STAMP): setup.py pyproject.toml Makefile
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PY) -c "import torch, torchvision" 2>/dev/null || $(PY) -m pip install $(TORCH_SPEC)
	$(PY) -m pip install setuptools wheel
	@# BasicSR 1.4.2 ships as source only and its build wants torch: build it against the torch installed above.
	$(PY) -m pip install --no-build-isolation --no-deps basicsr==1.4.2
	$(PY) -m pip install --no-build-isolation -e '.[test]'
	$(PY) -m ndr_plugin_hook install
	@touch $(STAMP)

demo: $(STAMP)
	$(PY) -m ndr_plugin.demo

test: $(STAMP)
	$(PY) -m pytest $(PYTEST_ARGS)

benchmark: $(STAMP)
	$(PY) benchmarks/run_all.py

clean-venv:
	rm -rf $(VENV)
