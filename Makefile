# The README's two commands: `make demo` and `make test`. Both create .venv on first use.
PYTHON ?= python3
TORCH_SPEC ?= torch==2.13.0
VENV ?= .venv
BIN := $(VENV)/bin
IRREGCONV_DATA ?= $(abspath ../shared/datasets)
export IRREGCONV_DATA

.PHONY: demo test install bench clean

$(VENV)/.installed: pyproject.toml setup.py Makefile $(wildcard irregconv/engine/backends/native/*.cpp irregconv/engine/backends/native/*.h)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q "$(TORCH_SPEC)"
	$(BIN)/python -m pip install -q -e ".[all,test]"
	touch $@

install: $(VENV)/.installed

demo: install
	$(BIN)/irregconv demo

test: install
	$(BIN)/python -m pytest -q

bench: install
	$(BIN)/irregconv bench engine
	$(BIN)/irregconv bench sparse
	$(BIN)/irregconv bench graph

clean:
	rm -rf $(VENV) outputs .pytest_cache
