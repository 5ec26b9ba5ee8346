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
# TLS (issue 13): TLS_CERT/TLS_KEY serve `make server`'s listeners and `make web` over TLS/HTTPS;
# TLS=1 (and CA=ca.pem for a private CA) make `make client` and `make web` speak TLS to the server
TLS_CERT ?=
TLS_KEY ?=
TLS ?=
CA ?=
SERVE_TLS = $(if $(TLS_CERT),--tls-cert $(TLS_CERT)) $(if $(TLS_KEY),--tls-key $(TLS_KEY))
DIAL_TLS = $(if $(filter 1 yes true,$(TLS)),--tls) $(if $(CA),--ca $(CA))

.DEFAULT_GOAL := help
.PHONY: help venv gen browser capture-tools postgres-tools transports server client web certs nats-tools cluster test test-postgres test-cluster test-tls bench-cluster check fmt clean bench bench-quick bench-reference bench-compare bench-profile bench-micro screenshot soak fuzz

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
	$(VENV)/bin/wirechat server --host $(HOST) $(foreach l,$(LISTEN),--listen $(l)) --db $(DB) $(SERVE_TLS)

client: $(STAMP) gen ## run the console client (TRANSPORT=name from `make transports`, HOST, PORT)
	$(VENV)/bin/wirechat client --transport $(TRANSPORT) --host $(HOST) $(if $(PORT),--port $(PORT)) $(DIAL_TLS)

capture-tools: ## install Debian's tcpdump and iproute2 (ss) for the bench's capture check, unless present
	@command -v tcpdump >/dev/null 2>&1 && command -v ss >/dev/null 2>&1 || { apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq tcpdump iproute2 >/dev/null; }

postgres-tools: ## install Debian's postgresql (the tests start their own throwaway cluster) unless present
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || { apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null; }

nats-tools: ## install Debian's nats-server (the cluster's bus; tests start their own) unless present
	@command -v nats-server >/dev/null 2>&1 || test -x /usr/sbin/nats-server || { apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nats-server >/dev/null; }

NODES ?= 3
cluster: $(STAMP) gen postgres-tools nats-tools ## try a cluster: PostgreSQL, nats-server and NODES=3 nodes (node k on default ports + 100k) until Ctrl-C
	$(PY) -m wirechat.services cluster $(NODES)

browser: ## install Debian's chromium and NSS's certutil (the HTTPS tests' CA) for the web UI tests, unless present
	@command -v chromium >/dev/null 2>&1 && command -v certutil >/dev/null 2>&1 || { apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium libnss3-tools >/dev/null; }

web: $(STAMP) gen ## run the web UI on WEB_PORT against the server (TRANSPORT, PORT of the server)
	$(VENV)/bin/wirechat web --transport $(TRANSPORT) --host $(HOST) --port $(WEB_PORT) \
	  $(if $(PORT),--server $(HOST):$(PORT)) $(SERVE_TLS) $(DIAL_TLS)

certs: $(STAMP) ## a throwaway CA and a certificate for 127.0.0.1/localhost in certs/ (trustme; for trying TLS)
	mkdir -p certs && $(PY) -m trustme -q -d certs -i 127.0.0.1 localhost ::1
	@echo "certs/server.pem + certs/server.key: TLS_CERT=certs/server.pem TLS_KEY=certs/server.key; the CA: CA=certs/client.pem"

screenshot: $(STAMP) gen browser ## retake docs/screenshot.png from the browser tests
	WIRECHAT_SCREENSHOT=1 $(PY) -m pytest tests/web -k "three_person and custom" -p no:cacheprovider

bench: $(STAMP) gen ## the full benchmark (<= 15 min, 5 rounds): reports/<run>/ and reports/latest/
	$(VENV)/bin/wirechat bench

bench-quick: $(STAMP) gen ## a short benchmark (<= 2 min at CI's load, 3 rounds), as CI runs it; both print where their time went and the budget
	$(VENV)/bin/wirechat bench --quick

bench-reference: $(STAMP) gen ## a full bench, promoted to reports/reference/ and added to its trend (history.json)
	$(VENV)/bin/wirechat bench
	$(PY) -m bench.trend promote reports/latest

bench-compare: $(STAMP) ## compare reports/latest with the reference (OLD=, NEW= to choose); exit 1 on a regression
	$(VENV)/bin/wirechat bench compare $(or $(OLD),reports/reference) $(or $(NEW),reports/latest)

bench-cluster: $(STAMP) gen postgres-tools nats-tools ## cluster scene: cross-node push latency p50/p99 and send throughput with 1, 2, 3 nodes: reports/cluster/<run>/
	$(PY) -m bench.cluster_scene --out reports/cluster

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

test-cluster: $(STAMP) gen postgres-tools nats-tools ## three nodes on PostgreSQL + NATS: fan-out, order, kill -9 of a node and of nats-server
	$(PY) -m pytest tests/cluster -q

test-tls: $(STAMP) gen ## the conformance suite with every listener over TLS (a throwaway CA, trustme)
	WIRECHAT_TEST_TLS=1 $(PY) -m pytest tests/conformance -q

check: $(STAMP) ## ruff, mypy over core/, transports/, wirechat/ and bench/, and fail if generated code is stale
	$(VENV)/bin/ruff check .
	$(PY) -m mypy core transports wirechat bench
	$(PY) -m transports.grpc.codegen --check

fmt: $(STAMP) ## format and fix what ruff can
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

clean: ## remove the virtualenv and caches
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis .benchmarks
