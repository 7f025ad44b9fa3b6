#!/bin/sh
# /usr/bin/lapps: the LAppS server from its private virtualenv (package lapps).
# `exec` keeps one process, so the master is the systemd unit's main PID (READY=1, SIGHUP, SIGTERM).
# -I: nothing from the current directory, PYTHONPATH or PYTHON* variables reaches the server.
# Without --config the installed configuration is used, unless LAPPS_CONFIG names another one.
: "${LAPPS_CONFIG:=/etc/lapps/lapps.toml}"
export LAPPS_CONFIG
exec /usr/lib/lapps/venv/bin/python -I -m lapps "$@"
