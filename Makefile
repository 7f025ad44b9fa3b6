# LAppS: `make run` starts the server on the shipped config, `make test` runs every test.
# Both set themselves up on a fresh Debian machine (as root): system packages, then a virtualenv.

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
ARGS   ?=

.PHONY: run test js node-deps browser-deps autobahn autobahn-full bench soak fuzz certs clean system-deps venv

# python-prctl compiles against libcap; the venv needs python3-venv on Debian's own Python.
system-deps:
	@if ! { [ -f /usr/include/sys/capability.h ] && $(PYTHON) -c 'import venv, ensurepip' 2>/dev/null && command -v gcc >/dev/null; }; then \
		echo "installing system packages (libcap-dev, python3-venv, python3-dev, gcc)"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libcap-dev python3-venv python3-dev gcc >/dev/null; \
	fi

$(STAMP): pyproject.toml setup.py lapps/ws/_speedups.c
	$(MAKE) system-deps
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test,k8s]'
	touch $(STAMP)

venv: $(STAMP)

run: $(STAMP) js
	@echo "LAppS: the demo page is at http://127.0.0.1:5083/ (static_dir in etc/lapps.toml)"
	$(PY) -m lapps $(ARGS)

# Autobahn needs CPython 2.7 (pyenv); where there is none it is reported as skipped, not failed.
# The second pytest run is the pure-Python codec (LAPPS_NO_SPEEDUPS=1, lapps/ws/codec.py): what a
# checkout without the C extension runs; its protocol, frame, echo, barrier, LAppS and fan-out tests.
NO_SPEEDUPS_TESTS := tests/test_frames.py tests/test_protocol.py tests/test_protocol_properties.py \
	tests/test_speedups.py tests/test_server_echo.py tests/test_server_codec.py tests/test_fault_barrier.py \
	tests/test_lapps_fastpath.py tests/test_server_lapps.py tests/test_fanout.py
# lint-imports first: the layering contracts of pyproject.toml ([tool.importlinter]) fail the build.
test: $(STAMP) docs-deps js browser-deps
	$(VENV)/bin/lint-imports
	$(PY) -m pytest -q tests
	LAPPS_NO_SPEEDUPS=1 $(PY) -m pytest -q $(NO_SPEEDUPS_TESTS)
	@if tests/autobahn/run.sh --probe; then $(MAKE) --no-print-directory autobahn; \
	else echo "autobahn: SKIPPED: no CPython 2.7 and no pyenv on this machine (see tests/autobahn/run.sh)"; fi

# The browser client: npm installs cbor-x (pinned in clients/js/package-lock.json), then the
# demo's vendor/ folder gets cbor-x's ESM files and lapps.js, so the page served by LAppS
# (static_dir) loads nothing from the internet. vendor/ is a build output (git-ignored).
JS      := clients/js
VENDOR  := clients/demo/vendor
CBOR_X  := index.js encode.js decode.js iterators.js scan.js LICENSE
js: $(VENDOR)/.built

node-deps:
	@if ! command -v npm >/dev/null || ! command -v node >/dev/null; then \
		echo "installing system packages (nodejs, npm)"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm >/dev/null; \
	fi

$(JS)/node_modules/.package-lock.json: $(JS)/package.json $(JS)/package-lock.json
	@$(MAKE) --no-print-directory node-deps
	@# not `npm ci`: it refuses a lock whose optional native speed-up (cbor-extract) lacks
	@# prebuilt packages in the registry; this installs the locked cbor-x, pure JavaScript as
	@# browsers run it, and leaves package-lock.json as it is
	npm install --prefix $(JS) --omit=optional --no-audit --no-fund --loglevel=error

$(VENDOR)/.built: $(JS)/node_modules/.package-lock.json $(JS)/lapps.js
	mkdir -p $(VENDOR)/cbor-x
	cd $(JS)/node_modules/cbor-x && cp $(CBOR_X) $(CURDIR)/$(VENDOR)/cbor-x/
	cp $(JS)/lapps.js $(VENDOR)/lapps.js
	touch $@

# Debian's chromium for the Playwright test (tests/test_demo_browser.py); playwright itself
# comes with the test extras in the venv.
browser-deps:
	@command -v chromium >/dev/null || { echo "installing system packages (chromium)"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }

# Autobahn TestSuite (fuzzingclient) against the echo service; builds a Python 2.7 venv once.
# `autobahn` (in make test): cases 1-10 over ws://, over wss:// and on the pure-Python codec
# (LAPPS_NO_SPEEDUPS=1), and the compression cases 12.1.*, 13.1.*, 13.7.* (about 4 minutes in all).
# `autobahn-full`: every case 1-13 with compression enabled (about 15 minutes here), and wss://.
AUTOBAHN := tests/autobahn/against_lapps.sh
CASES_1_10 := 1.*,2.*,3.*,4.*,5.*,6.*,7.*,9.*,10.*
autobahn: $(STAMP)
	$(AUTOBAHN) '$(CASES_1_10)'
	$(AUTOBAHN) --tls '$(CASES_1_10)'
	$(AUTOBAHN) --no-speedups '$(CASES_1_10)'
	$(AUTOBAHN) --deflate '12.1.*,13.1.*,13.7.*'

autobahn-full: $(STAMP)
	AUTOBAHN_TIMEOUT=2700 $(AUTOBAHN) --deflate '$(CASES_1_10),12.*,13.*'
	$(AUTOBAHN) --tls '$(CASES_1_10)'

# A development CA and a localhost certificate signed by it, for wss:// (etc/ssl/, not committed).
CERTS := etc/ssl
certs: $(CERTS)/localhost.crt

$(CERTS)/localhost.crt:
	mkdir -p $(CERTS)
	openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=LAppS development CA" \
		-keyout $(CERTS)/ca.key -out $(CERTS)/ca.crt 2>/dev/null
	openssl req -newkey rsa:2048 -nodes -subj "/CN=localhost" \
		-keyout $(CERTS)/localhost.key -out $(CERTS)/localhost.csr 2>/dev/null
	printf 'subjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1\nextendedKeyUsage=serverAuth\n' > $(CERTS)/ext.cnf
	openssl x509 -req -in $(CERTS)/localhost.csr -CA $(CERTS)/ca.crt -CAkey $(CERTS)/ca.key \
		-CAcreateserial -days 825 -extfile $(CERTS)/ext.cnf -out $(CERTS)/localhost.crt 2>/dev/null
	rm -f $(CERTS)/localhost.csr $(CERTS)/ext.cnf $(CERTS)/ca.srl
	@echo "wrote $(CERTS)/ca.crt (trust this one) and $(CERTS)/localhost.crt, $(CERTS)/localhost.key"

# Coverage-guided fuzzing (atheris) of every parser of peer bytes, FUZZ_SECONDS per target;
# falls back to hypothesis where no atheris wheel installs. Then the live-server fuzzer
# (fuzz/live.py: a running server, hostile sockets, C and pure-Python codec) for FUZZ_SECONDS.
# CI runs it briefly.
FUZZ_SECONDS ?= 60
fuzz: $(STAMP)
	@$(PY) -m pip install -q --only-binary=:all: atheris 2>/dev/null || echo "fuzz: no atheris wheel here; using the hypothesis fallback"
	$(PY) fuzz/run.py all --seconds $(FUZZ_SECONDS) --quiet
	$(PY) fuzz/live.py --seconds $(FUZZ_SECONDS)

# A long mixed-traffic run (not in make test): thousands of clients, slow readers, garbage
# senders, churn; reports RSS per worker, messages lost (must be 0) and close codes.
soak: $(STAMP)
	$(PY) soak/soak.py $(ARGS)

# Every benchmark, one after the other (about 25 minutes; bench/README.md): the frame codec
# alone; LAppS (raw and LAppS-protocol echo, 1, 2 and 4 workers) against the peer servers with
# the websocketpp client (ARGS go to bench/run_peers.py, e.g. ARGS="--quick"); connection setup
# rate and memory per idle connection; echo over wss:// and with permessage-deflate, and bcast
# fan-out to 10,000 subscribers; mqr throughput of the original's sender/receiver pair against
# multiprocessing.Queue. Tables on the terminal, CSV/JSON/PNG in bench/results/.
bench: bench-peers-setup
	$(PY) bench/bench_frames.py
	$(PEERS_PY) bench/run_peers.py $(ARGS)
	$(PY) bench/bench_setup.py
	$(PY) bench/bench_lapps.py
	$(PY) bench/bench_mqr.py

clean:
	rm -rf $(VENV) .venv-autobahn .venv-autobahn-tool reports build dist *.egg-info .pytest_cache .hypothesis
	find . -name __pycache__ -prune -exec rm -rf {} +

# Debian package: dist/lapps_<version>_<arch>.deb, a venv under /usr/lib/lapps plus config, unit,
# services (packaging/README.md; about 30 s). `deb-test` (root) builds it if missing, installs it,
# runs it as the lapps user on port 15083, echoes through it, then removes and purges it (~15 s).
.PHONY: deb deb-test
deb: js
	packaging/build-deb.sh

deb-test:
	tests/package/test_deb.sh

# Container image localhost/lapps:<version> (packaging/Dockerfile; README "Container image"): the
# .deb of `make deb` installed on a Debian 12 base that debootstrap makes here from the Debian
# mirror, built with podman, nothing pulled from a registry (about 50 s with the base, 20 s once it
# exists). `image-test` (root) runs it as Kubernetes would (read-only, no capabilities, uid 10001,
# config and services mounted), checks HEALTHCHECK and /readyz, echoes through it from 127.0.0.1,
# stops it with SIGTERM (a held connection gets 1001, exit 0); about 10 s after the build.
.PHONY: image image-test
image: deb
	packaging/build-image.sh

image-test: $(STAMP) image
	tests/package/test_image.sh

# C++ load client on websocketpp (Boost.Asio, OpenSSL for wss://): bench/client/lapps-bench-client
# (bench/client/README.md). Installs its Debian packages when missing, like system-deps.
BENCH_CLIENT := bench/client/lapps-bench-client
.PHONY: bench-client
bench-client:
	@if ! { [ -f /usr/include/websocketpp/client.hpp ] && [ -f /usr/include/boost/asio.hpp ] && \
		[ -f /usr/include/boost/system/error_code.hpp ] && [ -f /usr/include/openssl/ssl.h ] && \
		command -v g++ >/dev/null; }; then \
		echo "installing system packages (libwebsocketpp-dev, libboost-dev, libboost-system-dev, libssl-dev, g++)"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
			libwebsocketpp-dev libboost-dev libboost-system-dev libssl-dev g++ >/dev/null; \
	fi
	@$(MAKE) --no-print-directory $(BENCH_CLIENT)

$(BENCH_CLIENT): bench/client/lapps_bench_client.cpp
	g++ -O2 -std=c++17 -Wall -Wextra -o $@ $< -lssl -lcrypto -pthread

# LAppS against peer echo servers (bench/run_peers.py; bench/README.md, "Against peers"): installs
# what is missing (Debian packages, the peers' own venv bench/peers/.venv, node's ws into
# bench/peers/node_modules), builds the websocketpp peer and the C++ client, then runs it
# (~15 min; ARGS="--quick" for a 2-minute smoke run). `bench-peers-setup` only installs and builds.
PEERS    := bench/peers
PEERS_PY := $(PEERS)/.venv/bin/python
.PHONY: bench-peers bench-peers-setup
bench-peers: bench-peers-setup
	$(PEERS_PY) bench/run_peers.py $(ARGS)

bench-peers-setup: $(STAMP) bench-client $(PEERS)/.venv/.installed $(PEERS)/node_modules/ws/package.json \
		$(PEERS)/websocketpp_server

$(PEERS)/.venv/.installed: $(PEERS)/requirements.txt
	$(MAKE) system-deps
	$(PYTHON) -m venv $(PEERS)/.venv
	$(PEERS_PY) -m pip install -q --upgrade pip
	$(PEERS_PY) -m pip install -q -r $(PEERS)/requirements.txt
	touch $@

$(PEERS)/node_modules/ws/package.json: $(PEERS)/package.json
	@if ! command -v npm >/dev/null; then \
		echo "installing system packages (nodejs, npm)"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm >/dev/null; \
	fi
	npm install --prefix $(PEERS) --no-audit --no-fund --loglevel=error
	touch $@

$(PEERS)/websocketpp_server: $(PEERS)/websocketpp_server.cpp
	@if ! { [ -f /usr/include/websocketpp/server.hpp ] && [ -f /usr/include/boost/asio.hpp ] && \
		[ -f /usr/include/boost/system/error_code.hpp ] && command -v g++ >/dev/null; }; then \
		echo "installing system packages (libwebsocketpp-dev, libboost-dev, libboost-system-dev, g++)"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
			libwebsocketpp-dev libboost-dev libboost-system-dev g++ >/dev/null; \
	fi
	g++ -O2 -std=c++17 -Wall -Wextra -o $@ $< -lboost_system -pthread

# docs/: the slot table of architecture.md from lapps/ipc/slots.py and each docs/NAME.svg from
# docs/NAME.dot (Graphviz). make test installs Graphviz too, so that tests/test_docs.py really
# compares every committed SVG with what dot makes of its source.
.PHONY: docs docs-deps
docs: $(STAMP) docs-deps
	$(PY) docs/make_docs.py

docs-deps:
	@command -v dot >/dev/null || { echo "installing system packages (graphviz)"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq graphviz >/dev/null; }
