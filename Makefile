# `make demo` and `make test` work on a fresh Debian machine: they create .venv, install the
# package, install Debian's nginx (and wrk) when missing, then run.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test setup system-deps bench clean

setup: $(STAMP) system-deps

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

# nginx is the oracle of every differential test; wrk drives the benchmarks; openssl makes the TLS
# tests' certificates and is their s_client; curl is their interop client.
system-deps:
	@if ! command -v nginx >/dev/null 2>&1 || ! command -v wrk >/dev/null 2>&1 || ! command -v openssl >/dev/null 2>&1 || ! command -v curl >/dev/null 2>&1; then \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq nginx wrk openssl curl; \
	fi
	@# h2load (nghttp2-client): the HTTP/2 interop test and benchmarks/h2_bench.py
	@if ! command -v h2load >/dev/null 2>&1; then \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq nghttp2-client; \
	fi
	@# headless Chromium renders the HTML gap report in tests/test_report_formats.py
	@if [ ! -x /usr/bin/chromium ]; then \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq chromium; \
	fi

demo: setup
	$(BIN)/nginx-migrate demo

# Two pytest processes (pytest-xdist): the differential tests mostly wait on sockets and timers, so
# on CI's two cores the suite takes about 7 minutes instead of 13. Each test's servers are on ports
# of its own (shadow/runner.py, tests/), so the two never meet.
test: setup
	$(BIN)/python -m pytest -q -n 2

bench: setup
	$(BIN)/python benchmarks/h1_proxy.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .hypothesis
