# The two set-up commands of the README: `make demo` (the whole pipeline) and `make test`;
# `make docs` builds the documentation site (docs/, mkdocs.yml) into site/.
# Each creates .venv on first use. torch is pinned in constraints.txt (2.13.0) and taken from
# PyTorch's CPU wheel index: PyPI's Linux torch is the CUDA build with ~15 nvidia packages and
# triton. pip prefers the index's 2.13.0+cpu to PyPI's 2.13.0 (a local version sorts higher);
# where the index cannot be reached, pip's own configuration (find-links, mirrors) still
# serves, after one retry. tests/test_install.py checks what this command resolves.
PYTHON ?= python3
TORCH_INDEX ?= https://download.pytorch.org/whl/cpu
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
TEST_STAMP := $(VENV)/.installed-test
DOCS_STAMP := $(VENV)/.installed-docs
LITERT_TORCH := litert-torch litert-converter ai-edge-quantizer
PIP_INSTALL = $(BIN)/python -m pip install --quiet --retries 1 --extra-index-url $(TORCH_INDEX) -c constraints.txt

.PHONY: demo test docs install clean

# Every road of `payattn export --converter` is installed: the `all` extra brings ExecuTorch and
# what litert-torch imports; litert-torch's own declared dependencies cannot resolve beside the
# pins (see pyproject.toml), so it and its two converter packages follow with --no-deps.
$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(PIP_INSTALL) -e '.[test,bench,all]'
	$(PIP_INSTALL) --no-deps $(LITERT_TORCH)
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/payattn demo --out demo-out --force

# The tests also start a local Ray head and build the docs: the ray and docs extras, installed
# once on top of the main stamp.
$(TEST_STAMP): $(STAMP)
	$(PIP_INSTALL) -e '.[test,ray,docs]'
	touch $(TEST_STAMP)

test: $(TEST_STAMP)
	bash scripts/ci_system_deps.sh
	$(BIN)/python -m pytest

# The site is checked as CI checks it: --strict fails on a broken link, anchor or missing page.
$(DOCS_STAMP): $(STAMP)
	$(PIP_INSTALL) -e '.[docs]'
	touch $(DOCS_STAMP)

docs: $(DOCS_STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

clean:
	rm -rf $(VENV) demo-out site
