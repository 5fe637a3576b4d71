# The two set-up commands of the README: `make demo` (the whole pipeline) and `make test`.
# Each creates .venv on first use. torch comes first, pinned to the CPU build 2.13.0: any
# looser requirement lets pip fetch a multi-GB CUDA build.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test install clean

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[test,bench]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/payattn demo --out demo-out --force

test: $(STAMP)
	bash scripts/ci_system_deps.sh
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[test,ray]'
	$(BIN)/python -m pytest

clean:
	rm -rf $(VENV) demo-out
