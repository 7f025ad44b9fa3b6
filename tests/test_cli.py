"""The `lapps` command line: subcommands, --help and --version everywhere, the old flags, the
bash completion script against the parsers, and one version in the four places that show it
(--version, /status, the Server: header, the Debian package's build script)."""

from __future__ import annotations

import json
import re
import subprocess
import tomllib
import urllib.request

import pytest

import wsclient
from conftest import REPO, free_port, held_connections, run_cli, wait_for
from lapps import __version__
from lapps.cli import SUBCOMMANDS, build_parser, version_parser
from lapps.commands.config import check_parser, print_parser
from lapps.commands.deploy import build_parser as deploy_parser
from lapps.commands.migrate import build_parser as migrate_parser
from lapps.commands.status import build_parser as status_parser

PARSERS = {"serve": build_parser, "check-config": check_parser, "print-config": print_parser,
           "status": status_parser, "migrate-config": migrate_parser, "deploy": deploy_parser,
           "version": version_parser}
COMPLETION = REPO / "packaging" / "lapps.bash-completion"


def test_every_subcommand_has_a_parser_here():
    assert set(PARSERS) == set(SUBCOMMANDS)


@pytest.mark.parametrize("name", sorted(PARSERS))
def test_subcommand_help_exits_0_says_what_it_does_and_shows_an_example(name):
    done = run_cli(name, "--help")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"usage: lapps {name}")
    assert PARSERS[name]().description.split()[0] in done.stdout
    examples = done.stdout.split("examples:\n", 1)[1]
    assert re.search(r"^  lapps ", examples, re.M), done.stdout


@pytest.mark.parametrize("name", sorted(PARSERS))
def test_subcommand_version_flag(name):
    done = run_cli(name, "--version")
    assert (done.returncode, done.stdout) == (0, f"lapps {__version__}\n"), done.stderr


def test_top_level_help_and_version():
    done = run_cli("--help")
    assert done.returncode == 0
    for name in SUBCOMMANDS:
        assert re.search(rf"^  {name} ", done.stdout, re.M), name
    assert run_cli("--version").stdout == f"lapps {__version__}\n"
    assert run_cli("version").stdout == f"lapps {__version__}\n"
    assert run_cli("--workers", "2", "--version").stdout == f"lapps {__version__}\n"   # serve's flags first


def test_check_and_print_config_subcommands_equal_the_old_flags():
    for new, old in (("check-config", "--check-config"), ("print-config", "--print-config")):
        a, b = run_cli(new, "--workers", "3"), run_cli("--workers", "3", old)
        assert a.returncode == b.returncode == 0, (a.stderr, b.stderr)
        assert a.stdout == b.stdout
    assert "workers = 3" in run_cli("print-config", "--workers", "3").stdout


def test_check_config_subcommand_names_the_bad_key(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[limits]\nmax_headers = -1\n")
    done = run_cli("check-config", "--config", str(bad))
    assert done.returncode == 1
    assert "limits.max_headers: expected a positive integer, got -1" in done.stderr


def test_an_unknown_flag_is_an_error_with_usage():
    done = run_cli("check-config", "--no-such-flag")
    assert done.returncode == 2 and "usage: lapps check-config" in done.stderr


def completion(*words: str) -> set[str]:
    """What the shipped bash completion offers after `words` (the last one being completed)."""
    script = (f". {COMPLETION}\nCOMP_WORDS=({' '.join(words)})\nCOMP_CWORD={len(words) - 1}\n"
              '_lapps\nprintf "%s\\n" "${COMPREPLY[@]}"\n')
    done = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=10)
    assert done.returncode == 0, done.stderr
    return {w for w in done.stdout.split("\n") if w}


def options(name: str) -> set[str]:
    return {o for a in PARSERS[name]()._actions for o in a.option_strings if o != "-h"}


@pytest.mark.parametrize("name", sorted(PARSERS))
def test_bash_completion_offers_exactly_each_subcommands_options(name):
    assert completion("lapps", name, "-") == options(name)


def test_bash_completion_subcommands_and_serve_default():
    assert completion("lapps", "''") == set(SUBCOMMANDS)
    assert completion("lapps", "mig") == {"migrate-config"}
    assert completion("lapps", "-") == options("serve")
    assert completion("lapps", "--log-format", "''") == {"text", "json"}


# ---------------------------------------------------------------------- one version


def deb_build_version() -> str:
    """The version packaging/build-deb.sh gives the .deb: its own VERSION= line, run here."""
    script = (REPO / "packaging" / "build-deb.sh").read_text()
    line = next(l for l in script.splitlines() if l.startswith("VERSION="))
    done = subprocess.run(["sh", "-c", f'ROOT={REPO}; {line}; echo "$VERSION"'], capture_output=True,
                          text=True, timeout=10)
    return done.stdout.strip()


def test_the_package_version_is_lapps_version():
    assert re.fullmatch(r"\d+\.\d+\.\d+", __version__)
    assert deb_build_version() == __version__
    changelog = (REPO / "packaging" / "debian" / "changelog").read_text()
    assert changelog.startswith(f"lapps ({__version__}) ")       # build-deb.sh refuses otherwise
    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert "version" in project["project"]["dynamic"] and "version" not in project["project"]
    assert project["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "lapps.__version__"}
    assert f"## [{__version__}]" in (REPO / "CHANGELOG.md").read_text()


def test_version_agrees_across_cli_status_server_header_and_package(lapps_server):
    admin = free_port()
    server = lapps_server(settings={"admin": {"port": admin}, "limits": {"max_connections_per_ip": 1}})
    cli = run_cli("--version").stdout.split()[-1]
    with urllib.request.urlopen(f"http://127.0.0.1:{admin}/status", timeout=5) as r:
        status = json.loads(r.read())["version"]
        admin_header = r.headers["Server"]
    wait_for(lambda: held_connections(server) == 0, 5)   # the readiness probe's connection is gone
    with wsclient.connect(server.port, "/echo") as ok:    # the worker's 101
        upgraded = ok.headers["server"]
        with wsclient.connect(server.port, "/echo") as over:   # the listener's 429: one per address
            assert over.status == 429
            master_header = over.headers["server"]
    wait_for(lambda: held_connections(server) == 0, 5)
    with wsclient.connect(server.port, "/no-such-service") as refused:   # the worker's 404
        assert refused.status == 404
        refused_header = refused.headers["server"]
    assert {cli, status, deb_build_version()} == {__version__}
    assert upgraded == refused_header == master_header == f"LAppS/{__version__}"
    assert admin_header == f"LAppS-admin/{__version__}"
