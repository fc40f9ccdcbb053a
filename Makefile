# The README's two commands: `make demo` and `make test`. Both create .venv on first use.
PYTHON ?= python3
TORCH_SPEC ?= torch==2.13.0
VENV ?= .venv
BIN := $(VENV)/bin
# The data root (see datasets/README.md): ../shared/datasets where that folder exists (this project's machines),
# else datasets/ in the repository, which `python -m irregconv.data.fetch` fills.
IRREGCONV_DATA ?= $(abspath $(firstword $(wildcard ../shared/datasets) datasets))
export IRREGCONV_DATA

.PHONY: demo test install system-libraries bench clean

$(VENV)/.installed: pyproject.toml setup.py Makefile $(wildcard irregconv/engine/backends/native/*.cpp irregconv/engine/backends/native/*.h)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q "$(TORCH_SPEC)"
	$(BIN)/python -m pip install -q -e ".[all,test]"
	touch $@

# open3d-cpu (the .pcd / .ply reader) imports only with the system library libusb-1.0.so.0, which pip cannot
# install. As root with apt-get it is installed here; otherwise this says what to run and goes on (the tests
# that read .pcd / .ply files then skip, naming the library).
LIBUSB_PACKAGE := libusb-1.0-0
system-libraries:
	@if [ "$$(uname -s)" != Linux ] || { ldconfig -p || /sbin/ldconfig -p; } 2>/dev/null | grep -q 'libusb-1\.0\.so\.0'; then \
	    :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "make: installing Debian's $(LIBUSB_PACKAGE) (open3d-cpu needs libusb-1.0.so.0)"; \
	    export DEBIAN_FRONTEND=noninteractive; \
	    apt-get install -y -q $(LIBUSB_PACKAGE) >/dev/null 2>&1 \
	        || { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q $(LIBUSB_PACKAGE) >/dev/null 2>&1; } \
	        || echo "make: apt-get could not install $(LIBUSB_PACKAGE); run: apt-get update && apt-get install $(LIBUSB_PACKAGE)"; \
	else \
	    echo "make: open3d-cpu (reads .pcd / .ply files) needs the system library libusb-1.0.so.0, which is missing."; \
	    echo "      Install it with:  sudo apt-get install $(LIBUSB_PACKAGE)   (Debian / Ubuntu)"; \
	    echo "      Until then the tests that read .pcd / .ply files skip, naming the library."; \
	fi

install: system-libraries $(VENV)/.installed

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
