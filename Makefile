# wirechat — every target creates the virtualenv on demand; `make help` lists them.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PROTO := transports/grpc/chat.proto
GEN := transports/grpc/_generated
DB ?= wirechat.db
HOST ?= 127.0.0.1
TRANSPORT ?= custom
PORT ?=
LISTEN ?= all
WEB_PORT ?= 8080

.DEFAULT_GOAL := help
.PHONY: help venv gen browser capture-tools postgres-tools transports server client web test test-postgres test-tls check fmt clean bench bench-quick bench-reference bench-compare bench-profile bench-micro screenshot soak fuzz

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | expand -t 16

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP) ## create .venv and install wirechat with its dev tools

gen: $(GEN)/chat_pb2.py ## regenerate the gRPC code when chat.proto changed

$(GEN)/chat_pb2.py: $(PROTO) transports/protobuf_tcp/frames.proto transports/grpc/codegen.py | $(STAMP)
	$(PY) -m transports.grpc.codegen

transports: $(STAMP) ## list the transports (the registry), their default ports and contracts
	@$(VENV)/bin/wirechat transports

server: $(STAMP) gen ## run the chat server: every transport on its default port (LISTEN="custom=7000 ..."), DB=wirechat.db
	$(VENV)/bin/wirechat server --host $(HOST) $(foreach l,$(LISTEN),--listen $(l)) --db $(DB)

client: $(STAMP) gen ## run the console client (TRANSPORT=name from `make transports`, HOST, PORT)
	$(VENV)/bin/wirechat client --transport $(TRANSPORT) --host $(HOST) $(if $(PORT),--port $(PORT))

capture-tools: ## install Debian's tcpdump and iproute2 (ss) for the bench's capture check, unless present
	@command -v tcpdump >/dev/null 2>&1 && command -v ss >/dev/null 2>&1 || { apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq tcpdump iproute2 >/dev/null; }

postgres-tools: ## install Debian's postgresql (the tests start their own throwaway cluster) unless present
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || { apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null; }

browser: ## install Debian's chromium for the web UI tests (root, apt) unless present
	@command -v chromium >/dev/null 2>&1 || { apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }

web: $(STAMP) gen ## run the web UI on WEB_PORT against the server (TRANSPORT, PORT of the server)
	$(VENV)/bin/wirechat web --transport $(TRANSPORT) --host $(HOST) --port $(WEB_PORT) \
	  $(if $(PORT),--server $(HOST):$(PORT))

screenshot: $(STAMP) gen browser ## retake docs/screenshot.png from the browser tests
	WIRECHAT_SCREENSHOT=1 $(PY) -m pytest tests/web -k "three_person and custom" -p no:cacheprovider

bench: $(STAMP) gen ## the full benchmark (<= 15 min, 5 rounds): reports/<run>/ and reports/latest/
	$(VENV)/bin/wirechat bench

bench-quick: $(STAMP) gen ## a short benchmark (about 2 min, 3 rounds), as CI runs it
	$(VENV)/bin/wirechat bench --quick

bench-reference: $(STAMP) gen ## a full bench, promoted to reports/reference/ and added to its trend (history.json)
	$(VENV)/bin/wirechat bench
	$(PY) -m bench.trend promote reports/latest

bench-compare: $(STAMP) ## compare reports/latest with the reference (OLD=, NEW= to choose); exit 1 on a regression
	$(VENV)/bin/wirechat bench compare $(or $(OLD),reports/reference) $(or $(NEW),reports/latest)

bench-profile: $(STAMP) gen ## py-spy flame graphs of every transport's server under a send load: reports/profile/<run>/
	$(PY) -m bench.flame --out reports/profile

bench-micro: $(STAMP) gen ## codec vs protobuf micro-benchmarks (pytest-benchmark)
	$(PY) -m pytest tests/bench_micro --benchmark-enable --benchmark-columns=min,median,ops --benchmark-sort=name -p no:cacheprovider

SCALE ?= 1
soak: $(STAMP) gen ## every hostile attack of issue 14 at once against a canary pair (SCALE=1): reports/soak/
	$(PY) -m bench.hostile --scale $(SCALE)

FUZZ_SECONDS ?= 600
fuzz: $(STAMP) ## coverage-guided fuzzing (atheris) of every codec, FUZZ_SECONDS per target
	$(PY) fuzz/run.py --all --seconds $(FUZZ_SECONDS)

test: $(STAMP) gen browser capture-tools postgres-tools ## run the whole test suite
	$(PY) -m pytest

test-postgres: $(STAMP) gen postgres-tools ## the conformance suite against a server on the PostgreSQL store
	WIRECHAT_TEST_STORE=postgres $(PY) -m pytest tests/conformance -q

test-tls: $(STAMP) gen ## the conformance suite with every listener over TLS (a throwaway CA, trustme)
	WIRECHAT_TEST_TLS=1 $(PY) -m pytest tests/conformance -q

check: $(STAMP) ## ruff, mypy over core/ and transports/, and fail if generated code is stale
	$(VENV)/bin/ruff check .
	$(PY) -m mypy core transports
	$(PY) -m transports.grpc.codegen --check

fmt: $(STAMP) ## format and fix what ruff can
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

clean: ## remove the virtualenv and caches
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis .benchmarks
