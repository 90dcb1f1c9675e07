# Two commands: `make demo` and `make test`. Both create .venv and install what they need.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   ?= .venv
TORCH  ?= torch==2.13.0
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.torchrl_ext-installed

.PHONY: test test-fast demo bench install clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/pip install "$(TORCH)"
	$(BIN)/pip install -e ".[test]"
	touch $(STAMP)

install: $(STAMP)

# Two workers (the CI machine has two cores); tests that share a server or a Ray cluster share a worker
# (xdist groups, tests/conftest.py); a test that hangs fails after the `timeout` in pyproject.toml.
PYTEST := $(BIN)/python -m pytest tests torchrl_ext -n $(or $(WORKERS),2) --dist loadgroup

test: $(STAMP)
	$(PYTEST)

test-fast: $(STAMP)
	$(PYTEST) -m "not slow"

demo: $(STAMP)
	$(BIN)/python -m torchrl_ext.demo --root demo_data

bench: $(STAMP)
	$(BIN)/python benchmarks/run_all.py

clean:
	rm -rf demo_data bench_data
