# `make demo` and `make test` work on a fresh Debian machine: they create .venv, install the
# package, install Debian's nginx (and wrk) when missing, then run.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test setup system-deps native bench clean

# The compiled hot path (newproxy/native.py): rebuilt when any newproxy source changed, since a
# build only runs while it matches them all. A failed build leaves newproxy interpreted, and says why.
NATIVE := newproxy/_native/manifest.json
NEWPROXY_SOURCES := $(shell find newproxy -name '*.py' -not -path '*/_native*')

setup: $(STAMP) system-deps $(NATIVE)

$(NATIVE): $(STAMP) $(NEWPROXY_SOURCES)
	-$(BIN)/python -m newproxy.native_build

# `make native` insists: CI (.ci/run) runs it first, so that a suite that ran interpreted is a failure.
native: $(STAMP) system-deps
	$(BIN)/python -m newproxy.native_build

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test,native]'
	touch $(STAMP)

# nginx is the oracle of every differential test; wrk drives the benchmarks; openssl makes the TLS
# tests' certificates and is their s_client; curl is their interop client; gcc (and Python's headers,
# which a Debian Python has in python3-dev) build the compiled hot path.
system-deps:
	@if ! command -v nginx >/dev/null 2>&1 || ! command -v wrk >/dev/null 2>&1 || ! command -v openssl >/dev/null 2>&1 || ! command -v curl >/dev/null 2>&1; then \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq nginx wrk openssl curl; \
	fi
	@if ! command -v gcc >/dev/null 2>&1 || [ ! -f "$$($(PYTHON) -c 'import sysconfig; print(sysconfig.get_paths()["include"])')/Python.h" ]; then \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq gcc python3-dev; \
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
# Then, when the suite ran compiled, the tests of the compiled modules once more on their sources
# (NEWPROXY_NATIVE=0): both paths stay tested, and an edit that only one of them tolerates shows.
INTERPRETED_TESTS := tests/test_h1parse.py tests/test_native.py tests/test_parking_release.py tests/test_h1_raw_corpus.py \
	tests/test_differential_proxy.py tests/test_differential_next_upstream.py tests/test_differential_websocket.py \
	tests/test_differential_auth_first.py tests/test_grpc_client.py tests/test_engine.py tests/test_upstreams.py \
	tests/test_zones.py tests/test_timerwheel.py tests/test_static_memo.py tests/test_metrics.py
test: setup
	$(BIN)/python -m pytest -q -n 2
	@if $(BIN)/python -c 'import sys, newproxy.native as n; sys.exit(not n.is_compiled())'; then \
		echo "the compiled modules' tests, interpreted:"; \
		NEWPROXY_NATIVE=0 $(BIN)/python -m pytest -q -n 2 $(INTERPRETED_TESTS); \
	fi

bench: setup
	$(BIN)/python benchmarks/h1_proxy.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .hypothesis newproxy/_native newproxy/_native.new
