# LAppS: `make run` starts the server on the shipped config, `make test` runs every test.
# Both set themselves up on a fresh Debian machine (as root): system packages, then a virtualenv.

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
ARGS   ?=

.PHONY: run test autobahn bench clean system-deps venv

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
	$(PY) -m pip install -q -e '.[test]'
	touch $(STAMP)

venv: $(STAMP)

run: $(STAMP)
	$(PY) -m lapps $(ARGS)

# Autobahn needs CPython 2.7 (pyenv); where there is none it is reported as skipped, not failed.
test: $(STAMP)
	$(PY) -m pytest -q tests
	@if tests/autobahn/run.sh --probe; then tests/autobahn/against_lapps.sh; \
	else echo "autobahn: SKIPPED: no CPython 2.7 and no pyenv on this machine (see tests/autobahn/run.sh)"; fi

# Autobahn TestSuite (fuzzingclient) cases 1-10 against /echo; builds a Python 2.7 venv once.
autobahn: $(STAMP)
	tests/autobahn/against_lapps.sh

bench: $(STAMP)
	$(PY) bench/bench_frames.py

clean:
	rm -rf $(VENV) .venv-autobahn .venv-autobahn-tool reports build dist *.egg-info .pytest_cache .hypothesis
	find . -name __pycache__ -prune -exec rm -rf {} +
