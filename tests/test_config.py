"""lapps.config: defaults, the shipped file, overrides, errors that name the key, paths, round trip."""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lapps.config import (
    ACLConfig,
    Config,
    ConfigError,
    ServiceConfig,
    default_config_path,
    load_config,
    to_toml,
)

REPO = Path(__file__).resolve().parent.parent
SHIPPED = REPO / "etc" / "lapps.toml"


def make_service(services_dir: Path, name: str) -> Path:
    """A tiny Lua service script where the config expects it: <services_dir>/<name>/<name>.lua."""
    script = services_dir / name / f"{name}.lua"
    script.parent.mkdir(parents=True, exist_ok=True)
    script.write_text(f"-- test service {name}\nreturn {{}}\n")
    return script


@pytest.fixture
def site(tmp_path: Path) -> Path:
    """A layout like the repo's: <site>/etc/ for configs, <site>/services/ with echo and chat."""
    (tmp_path / "etc").mkdir()
    for name in ("echo", "chat", "ticker"):
        make_service(tmp_path / "services", name)
    return tmp_path


def write(site: Path, text: str, name: str = "lapps.toml") -> str:
    path = site / "etc" / name
    path.write_text(text)
    return str(path)


def error_of(site: Path, text: str, overrides: dict[str, object] | None = None) -> str:
    with pytest.raises(ConfigError) as info:
        load_config(write(site, text), overrides)
    return str(info.value)


# --- defaults and the shipped file ------------------------------------------------------------


def test_defaults_load_without_a_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    config = load_config()
    assert config.source is None
    assert config.services == {}
    s = config.server
    assert (s.ip, s.port, s.listeners, s.workers, s.max_connections) == ("0.0.0.0", 5083, 2, 4, 10000)
    assert (s.shutdown_timeout, s.drain_timeout) == (10.0, 30.0)
    assert isinstance(s.shutdown_timeout, float)
    # With no file, relative defaults are relative to the current directory.
    assert s.services_dir == str(tmp_path.parent / "services")
    assert s.tls.enabled is False and s.tls.min_version == "1.2"
    assert s.tls.cert == str(tmp_path / "ssl" / "localhost.crt")
    assert s.acl == ACLConfig("allow", ())
    lim = config.limits
    assert (lim.max_handshake_size, lim.max_headers, lim.max_outbound_buffer) == (8192, 100, 4194304)
    assert (lim.handshake_timeout, lim.idle_timeout, lim.ping_interval) == (10.0, 0.0, 30.0)
    assert (lim.ping_timeout, lim.close_timeout, lim.max_connections_per_ip) == (30.0, 5.0, 0)
    w = config.workers
    assert (w.max_poll_events, w.input_buffer_size, w.auto_fragment, w.heartbeat_timeout) == (512, 65536, 0, 10.0)
    assert (config.balancer.connection_weight, config.balancer.backlog_weight) == (1.0, 0.01)
    assert (config.admin.ip, config.admin.port) == ("127.0.0.1", 5084)
    assert config.cluster.redis_url == ""


def test_config_is_frozen() -> None:
    config = load_config()
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.server.port = 1  # type: ignore[misc]


SHIPPED_SERVICES = ["echo", "echo_lapps", "time_broadcast", "mqr_sender", "mqr_receiver"]


def shipped_copy(site: Path) -> str:
    """etc/lapps.toml copied into a site whose services/ has a script for each shipped service
    and which has the demo page's folder (static_dir)."""
    for name in SHIPPED_SERVICES:
        if not (site / "services" / name).is_dir():
            make_service(site / "services", name)
    (site / "clients" / "demo").mkdir(parents=True, exist_ok=True)
    return shutil.copy(SHIPPED, site / "etc" / "lapps.toml")


def test_shipped_config_loads_with_its_echo_service(site: Path) -> None:
    config = load_config(shipped_copy(site))
    assert config.server.services_dir == str(site / "services")
    assert list(config.services) == SHIPPED_SERVICES
    assert config.services["echo_lapps"].protocol == "lapps"
    assert config.services["time_broadcast"].standalone
    assert config.services["mqr_receiver"].depends == ("mqr_sender",)
    echo = config.services["echo"]
    assert (echo.protocol, echo.request_target, echo.standalone) == ("raw", "/echo", False)
    assert echo.directory == str(site / "services" / "echo")
    assert echo.script == str(site / "services" / "echo" / "echo.lua")
    assert echo.max_inbound_message_size == 16777216 and echo.lapps_max_errors == 3


def test_shipped_config_values_equal_the_builtin_defaults(site: Path) -> None:
    shipped = load_config(shipped_copy(site))
    empty = load_config(write(site, "", "empty.toml"))  # same folder, so paths resolve alike
    # the one deliberate difference: the shipped file serves the demo page, the default is off
    assert (shipped.server.static_dir, empty.server.static_dir) == (str(site / "clients" / "demo"), "")
    shipped = dataclasses.replace(shipped, server=dataclasses.replace(shipped.server, static_dir=""))
    for section in ("server", "limits", "workers", "balancer", "admin", "cluster"):
        assert getattr(shipped, section) == getattr(empty, section), section


def test_shipped_config_in_place_points_at_the_repo_services() -> None:
    script = REPO / "services" / "echo" / "echo.lua"
    if script.is_file():
        config = load_config(str(SHIPPED))
        assert config.services["echo"].script == str(script)
    else:  # the echo service is not written yet: the error must say exactly what is missing
        with pytest.raises(ConfigError, match=re.escape(f"services.echo: script not found: {script}")):
            load_config(str(SHIPPED))


def test_service_defaults(site: Path) -> None:
    config = load_config(write(site, 'server.services_dir = "../services"\n[services.chat]\n'))
    chat = config.services["chat"]
    assert chat == ServiceConfig(
        name="chat", protocol="raw", request_target="/chat", max_inbound_message_size=16777216,
        preload=(), acl=ACLConfig("allow", ()), extra_headers={}, subprotocols=(), origins=(),
        permessage_deflate=False, lapps_max_errors=3, standalone=False, instances=1, depends=(),
        auto_start=True, allow_exec=False, directory=str(site / "services" / "chat"),
        script=str(site / "services" / "chat" / "chat.lua"))


def test_service_keys_are_read_and_normalised(site: Path) -> None:
    config = load_config(write(site, """
[services.chat]
protocol = "LAppS"
preload = ["nap", "time"]
acl = { policy = "deny", exclude = ["10.0.0.0/8", "::1", "192.168.1.7/24"] }
extra_headers = { X-Server = "lapps" }
subprotocols = ["chat.v1"]
origins = ["https://example.com"]
[services.ticker]
standalone = true
depends = ["chat"]
auto_start = false
"""))
    chat, ticker = config.services["chat"], config.services["ticker"]
    assert chat.protocol == "lapps"
    assert chat.preload == ("nap", "time")
    assert chat.acl == ACLConfig("deny", ("10.0.0.0/8", "::1", "192.168.1.7/24"))
    assert chat.extra_headers == {"X-Server": "lapps"}
    assert (chat.subprotocols, chat.origins) == (("chat.v1",), ("https://example.com",))
    assert ticker.standalone and ticker.depends == ("chat",) and not ticker.auto_start


def test_file_values_merge_key_by_key_over_defaults(site: Path) -> None:
    config = load_config(write(site, "[server]\nworkers = 8\n[server.tls]\nmin_version = '1.3'\n"))
    assert config.server.workers == 8 and config.server.listeners == 2
    assert config.server.tls.min_version == "1.3" and config.server.tls.enabled is False
    assert config.source == str(site / "etc" / "lapps.toml")


# --- overrides (the CLI flags) ----------------------------------------------------------------


def test_overrides_beat_the_file(site: Path) -> None:
    path = write(site, "[server]\nworkers = 8\nport = 7000\n")
    config = load_config(path, {"server.workers": 2, "server.port": 9000, "server.listeners": None})
    assert (config.server.workers, config.server.port, config.server.listeners) == (2, 9000, 2)


def test_overrides_without_a_file_and_into_services(site: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(site)
    config = load_config(None, {"server.services_dir": "services", "services.echo.protocol": "LAPPS"})
    assert config.server.services_dir == str(site / "services")  # relative to the current directory
    assert config.services["echo"].protocol == "lapps"


def test_override_relative_path_is_relative_to_cwd_not_the_file(site: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(site / "services")
    config = load_config(write(site, ""), {"server.services_dir": "."})
    assert config.server.services_dir == str(site / "services")


@pytest.mark.parametrize("overrides, message", [
    ({"server.bogus": 1}, "server.bogus: unknown key"),
    ({"server.workers": 0}, "server.workers: expected a positive integer, got 0"),
    ({"server.port": "80"}, 'server.port: expected an integer from 1 to 65535, got "80"'),
    ({"server..port": 1}, "server..port: expected a dotted key"),
])
def test_bad_overrides_name_the_key(site: Path, overrides: dict[str, object], message: str) -> None:
    assert message in error_of(site, "", overrides)


# --- errors name the dotted key, the value and what was expected ------------------------------


@pytest.mark.parametrize("section", [
    "server", "server.tls", "server.acl", "limits", "workers", "balancer", "admin", "cluster", "services.echo",
])
def test_unknown_key_in_each_section(site: Path, section: str) -> None:
    message = error_of(site, f"[{section}]\nbogus = 1\n")
    assert message.startswith(f"{section}.bogus: unknown key")


def test_unknown_top_level_section(site: Path) -> None:
    assert error_of(site, "[logging]\nlevel = 1\n").startswith("logging: unknown key")


@pytest.mark.parametrize("name", ["name", "directory", "script"])
def test_derived_service_fields_cannot_be_set(site: Path, name: str) -> None:
    assert error_of(site, f"[services.echo]\n{name} = 'x'\n").startswith(f"services.echo.{name}: unknown key")


@pytest.mark.parametrize("text, message", [
    ("[server]\nport = 0", "server.port: expected an integer from 1 to 65535, got 0"),
    ("[server]\nport = 65536", "server.port: expected an integer from 1 to 65535, got 65536"),
    ("[server]\nport = true", "server.port: expected an integer from 1 to 65535, got true"),
    ("[server]\nport = 5083.0", "server.port: expected an integer from 1 to 65535, got 5083.0"),
    ("[server]\nworkers = 0", "server.workers: expected a positive integer, got 0"),
    ("[server]\nlisteners = -1", "server.listeners: expected a positive integer, got -1"),
    ("[server]\nip = 'localhost'", 'server.ip: expected an IPv4 or IPv6 address, got "localhost"'),
    ("[server]\nshutdown_timeout = -1", "server.shutdown_timeout: expected a non-negative number, got -1"),
    ("[server]\ndrain_timeout = 'soon'", 'server.drain_timeout: expected a non-negative number, got "soon"'),
    ("[server]\nservices_dir = 5", "server.services_dir: expected a non-empty path of printable characters, got 5"),
    ("[server]\ntls = 5", "server.tls: expected a table, got 5"),
    ("[server.tls]\nenabled = 'yes'", 'server.tls.enabled: expected true or false, got "yes"'),
    ("[server.tls]\nmin_version = '1.1'", 'server.tls.min_version: expected one of "1.2", "1.3", got "1.1"'),
    ("[server.acl]\npolicy = 'maybe'", 'server.acl.policy: expected one of "allow", "deny", got "maybe"'),
    ("[server.acl]\nexclude = ['10.0.0.0/33']", 'server.acl.exclude[0]: expected an IP address or CIDR block, '
                                               'got "10.0.0.0/33"'),
    ("[server.acl]\nexclude = '10.0.0.1'", 'server.acl.exclude: expected a list of IP addresses or CIDR blocks'),
    ("[limits]\nmax_headers = -1", "limits.max_headers: expected a positive integer, got -1"),
    ("[limits]\nmax_handshake_size = 0", "limits.max_handshake_size: expected a positive integer, got 0"),
    ("[limits]\nidle_timeout = -0.5", "limits.idle_timeout: expected a non-negative number, got -0.5"),
    ("[limits]\nclose_timeout = 1e400", "limits.close_timeout: expected a non-negative number, got inf"),
    ("[limits]\nclose_timeout = 100000000000000000000", "limits.close_timeout: expected a non-negative number"),
    ("[server]\nmax_connections = 9223372036854775808", "server.max_connections: expected a positive integer"),
    ("[limits]\nping_timeout = nan", "limits.ping_timeout: expected a non-negative number, got nan"),
    ("[limits]\nmax_connections_per_ip = -1", "limits.max_connections_per_ip: expected a non-negative integer"),
    ("[workers]\nauto_fragment = 1.5", "workers.auto_fragment: expected a non-negative integer, got 1.5"),
    ("[workers]\nheartbeat_timeout = 0", "workers.heartbeat_timeout: expected a positive number, got 0"),
    ("[balancer]\nbacklog_weight = false", "balancer.backlog_weight: expected a non-negative number, got false"),
    ("[admin]\nport = -1", "admin.port: expected an integer from 0 to 65535, got -1"),
    ("[admin]\nport = 5083", "admin.port: expected a port other than server.port, got 5083"),
    ("[cluster]\nredis_url = 'http://x'", 'cluster.redis_url: expected "" or a redis://'),
])
def test_bad_values_name_key_value_and_expectation(site: Path, text: str, message: str) -> None:
    assert message in error_of(site, text)


@pytest.mark.parametrize("body, message", [
    ("protocol = 'http'", 'services.echo.protocol: expected one of "raw", "lapps" (any case), got "http"'),
    ("protocol = 1", 'services.echo.protocol: expected one of "raw", "lapps" (any case), got 1'),
    ("preload = ['nap', 'os']", 'services.echo.preload[1]: expected one of "nap", "time", "murmur", "mqr", "cws", '
                                'got "os"'),
    ("preload = 'nap'", 'services.echo.preload: expected a list of module names, got "nap"'),
    ("request_target = 'echo'", 'services.echo.request_target: expected a path starting with /'),
    ("request_target = '/echo?x=1'", 'services.echo.request_target: expected a path starting with /'),
    ("acl = { policy = 'allow', exclude = ['not-an-ip'] }",
     'services.echo.acl.exclude[0]: expected an IP address or CIDR block, got "not-an-ip"'),
    ("acl = { policy = 'block' }", 'services.echo.acl.policy: expected one of "allow", "deny", got "block"'),
    ("extra_headers = { X-A = 1 }", "services.echo.extra_headers.X-A: expected a string of printable characters, "
                                    "got 1"),
    ("extra_headers = { Upgrade = 'h2c' }", 'services.echo.extra_headers.Upgrade: expected a header name other than'),
    ("extra_headers = { X-A = \"a\\r\\nSet-Cookie: x\" }", "services.echo.extra_headers.X-A: expected a string "
                                                           "of printable characters"),
    ("extra_headers = []", "services.echo.extra_headers: expected a table of header names"),
    ("subprotocols = ['a b']", 'services.echo.subprotocols[0]: expected an HTTP token'),
    ("origins = [\"a\\u0013b\"]", 'services.echo.origins[0]: expected a string of printable characters, got "a\\u0013b"'),
    ("origins = [1]", "services.echo.origins[0]: expected a string of printable characters, got 1"),
    ("permessage_deflate = 1", "services.echo.permessage_deflate: expected true or false, got 1"),
    ("lapps_max_errors = -1", "services.echo.lapps_max_errors: expected a non-negative integer, got -1"),
    ("instances = 0", "services.echo.instances: expected a positive integer, got 0"),
    ("max_inbound_message_size = 0", "services.echo.max_inbound_message_size: expected a positive integer, got 0"),
    ("allow_exec = 'no'", 'services.echo.allow_exec: expected true or false, got "no"'),
    ("depends = ['missing']", 'services.echo.depends[0]: expected the name of a configured service, got "missing"'),
    ("depends = ['echo']", "services.echo.depends: expected no dependency cycle, got echo -> echo"),
])
def test_bad_service_values_name_the_key(site: Path, body: str, message: str) -> None:
    assert message in error_of(site, f"[services.echo]\n{body}\n")


def test_duplicate_request_target_names_the_second_service(site: Path) -> None:
    message = error_of(site, "[services.echo]\n[services.chat]\nrequest_target = '/echo'\n")
    assert message == ('services.chat.request_target: expected a path no other service uses, '
                       'got "/echo" (services.echo has it)')


def test_standalone_services_do_not_claim_a_request_target(site: Path) -> None:
    config = load_config(write(site, "[services.echo]\n[services.ticker]\nstandalone = true\nrequest_target = '/echo'\n"))
    assert set(config.services) == {"echo", "ticker"}


def test_dependency_cycle_is_an_error(site: Path) -> None:
    message = error_of(site, "[services.echo]\ndepends = ['chat']\n[services.chat]\ndepends = ['echo']\n")
    assert message == "services.echo.depends: expected no dependency cycle, got echo -> chat -> echo"


def test_missing_script_names_the_service_and_path(site: Path) -> None:
    missing = site / "services" / "absent" / "absent.lua"
    assert error_of(site, "[services.absent]\n") == f"services.absent: script not found: {missing}"


@pytest.mark.parametrize("text, message", [
    ("[services]\nechoes = 1", "services.echoes: expected a table, got 1"),
    ('[services."my-svc"]', 'services.my-svc: expected a service name of letters, digits and _'),
    ("services = 3", "services: expected a table of services, got 3"),
])
def test_bad_service_tables(site: Path, text: str, message: str) -> None:
    assert message in error_of(site, text)


def test_tls_enabled_needs_the_files(site: Path) -> None:
    message = error_of(site, "[server.tls]\nenabled = true\ncert = 'certs/a.crt'\n")
    assert message == f"server.tls.cert: file not found: {site / 'etc' / 'certs' / 'a.crt'}"
    (site / "etc" / "certs").mkdir()
    (site / "etc" / "certs" / "a.crt").write_text("pem")
    (site / "etc" / "certs" / "a.key").write_text("pem")
    config = load_config(write(site, "[server.tls]\nenabled = true\ncert = 'certs/a.crt'\nkey = 'certs/a.key'\n"))
    assert config.server.tls.key == str(site / "etc" / "certs" / "a.key")


def test_toml_syntax_error_names_the_file_and_position(site: Path) -> None:
    path = write(site, "[server]\nworkers = 4\nport = = 1\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value).startswith(f"{path}: invalid TOML:")
    assert "line 3" in str(info.value)


def test_toml_parser_crash_is_still_a_config_error(site: Path) -> None:
    # The `toml` package raises IndexError on this input instead of its own decode error.
    path = write(site, "a = {b=1")
    with pytest.raises(ConfigError, match=re.escape(f"{path}: invalid TOML")):
        load_config(path)


def test_missing_file_names_the_path(tmp_path: Path) -> None:
    path = tmp_path / "nope.toml"
    with pytest.raises(ConfigError, match=re.escape(f"{path}: config file not found")):
        load_config(str(path))


# --- paths ------------------------------------------------------------------------------------


def test_relative_paths_resolve_against_the_files_folder(site: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir("/")
    nested = site / "etc" / "conf.d"
    nested.mkdir()
    path = nested / "lapps.toml"
    path.write_text('[server]\nservices_dir = "../../services"\n[server.tls]\ncert = "c.pem"\n[services.echo]\n')
    config = load_config(os.path.relpath(path))  # a relative --config path works too
    assert config.server.services_dir == str(site / "services")
    assert config.server.tls.cert == str(nested / "c.pem")
    assert config.server.tls.key == str(nested / "ssl" / "localhost.key")  # defaults too
    assert config.services["echo"].script == str(site / "services" / "echo" / "echo.lua")


def test_absolute_paths_are_kept(site: Path) -> None:
    config = load_config(write(site, f'[server]\nservices_dir = "{site / "services"}"\n'))
    assert config.server.services_dir == str(site / "services")


# --- round trip and default path --------------------------------------------------------------


def round_trip(config: Config, folder: Path) -> Config:
    path = folder / "printed.toml"
    path.write_text(to_toml(config))
    return load_config(str(path))


def test_to_toml_round_trip_of_a_full_config(site: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    config = load_config(write(site, """
[server]
workers = 3
shutdown_timeout = 2.5
[server.acl]
policy = "deny"
exclude = ["127.0.0.1", "fe80::/10"]
[server.tls]
min_version = "1.3"
[services.echo]
protocol = "LAPPS"
extra_headers = { "X-A.b" = "v 1", X-Empty = "" }
origins = ["https://a.example", "quote\\"d"]
[services.ticker]
standalone = true
instances = 2
preload = ["nap", "time"]
depends = ["echo"]
"""))
    text = to_toml(config)
    assert "directory" not in text and "script" not in text
    assert f'services_dir = "{site / "services"}"' in text
    elsewhere = tmp_path_factory.mktemp("elsewhere")  # absolute paths: the text means the same anywhere
    again = round_trip(config, elsewhere)
    assert again == config
    assert again.source == str(elsewhere / "printed.toml")


def test_to_toml_round_trip_of_defaults(tmp_path: Path) -> None:
    config = load_config()
    assert round_trip(config, tmp_path) == config


@settings(max_examples=40, deadline=None)
@given(
    workers=st.integers(1, 64),
    port=st.integers(1, 65535),
    timeout=st.floats(0, 1e6, allow_nan=False),
    weight=st.floats(0, 100, allow_nan=False),
    policy=st.sampled_from(["allow", "deny"]),
    prefix=st.integers(0, 32),
)
def test_to_toml_round_trip_property(workers: int, port: int, timeout: float, weight: float, policy: str,
                                     prefix: int, tmp_path_factory: pytest.TempPathFactory) -> None:
    overrides: dict[str, object] = {
        "server.workers": workers, "server.port": port, "admin.port": 0, "limits.idle_timeout": timeout,
        "balancer.backlog_weight": weight, "server.acl.policy": policy,
        "server.acl.exclude": [f"10.1.2.3/{prefix}"],
    }
    config = load_config(None, overrides)
    assert round_trip(config, tmp_path_factory.mktemp("rt")) == config


# Printable text of any script, with URL punctuation, quotes and backslashes. Not "," or '"': the
# `toml` 0.10.2 decoder reads ["," ...] wrongly or crashes on [",a"], and reads "\"" as "".
_TEXT = st.text(st.characters(blacklist_categories=("C", "Z"), blacklist_characters=',"') | st.sampled_from(" '\\"))


@settings(max_examples=60, deadline=None)
@given(text=_TEXT)
def test_to_toml_round_trip_of_printable_strings(text: str, tmp_path_factory: pytest.TempPathFactory) -> None:
    site = tmp_path_factory.mktemp("site")
    make_service(site / "services", "echo")
    overrides: dict[str, object] = {
        "server.services_dir": str(site / "services"), "services.echo.origins": [text],
        "services.echo.extra_headers": {"X-Text": text},
    }
    config = load_config(None, overrides)
    assert round_trip(config, site) == config


def test_default_config_path_prefers_lapps_config(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("LAPPS_CONFIG", str(tmp_path / "mine.toml"))
    assert default_config_path() == str(tmp_path / "mine.toml")


def test_default_config_path_falls_back_to_the_shipped_file(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LAPPS_CONFIG", raising=False)
    assert default_config_path() == str(SHIPPED)
    monkeypatch.setenv("LAPPS_CONFIG", "")  # empty counts as unset
    assert default_config_path() == str(SHIPPED)


def test_cws_tls_keys(site: Path) -> None:
    message = error_of(site, "[services.echo]\ncws_ca_file = 'ca.pem'\n")
    assert message == f"services.echo.cws_ca_file: file not found: {site / 'etc' / 'ca.pem'}"
    (site / "etc" / "ca.pem").write_text("pem")
    config = load_config(write(site, "[services.echo]\ncws_ca_file = 'ca.pem'\ncws_verify = false\n"
                                     "cws_connect_to = { 'api.example.com:443' = '127.0.0.1:8443' }\n"))
    svc = config.services["echo"]
    assert (svc.cws_ca_file, svc.cws_verify) == (str(site / "etc" / "ca.pem"), False)
    assert svc.cws_connect_to == {"api.example.com:443": "127.0.0.1:8443"}
    message = error_of(site, "[services.echo]\ncws_connect_to = { 'api.example.com' = '127.0.0.1:8443' }\n")
    assert message == ('services.echo.cws_connect_to.api.example.com: expected "host:port" as the key '
                       '(port 1-65535), got "api.example.com"')
    message = error_of(site, "[services.echo]\ncws_connect_to = { 'a:1' = '127.0.0.1:70000' }\n")
    assert 'expected "host:port" as the value (port 1-65535), got "127.0.0.1:70000"' in message


# --- [server] lua_path (require's extra folders) --------------------------------------------


def test_lua_path_is_relative_to_the_file_and_reaches_every_service(site: Path) -> None:
    (site / "rocks" / "share").mkdir(parents=True)
    (site / "etc" / "lib").mkdir()
    config = load_config(write(site, '[server]\nlua_path = ["../rocks/share", "lib"]\n'
                                     '[services.echo]\n[services.chat]\n'))
    expected = (str(site / "rocks" / "share"), str(site / "etc" / "lib"))
    assert config.server.lua_path == expected
    assert {svc.lua_path for svc in config.services.values()} == {expected}
    assert load_config(write(site, "[server]\n[services.echo]\n")).services["echo"].lua_path == ()


@pytest.mark.parametrize("value, message", [
    ('["missing"]', 'server.lua_path[0]: expected an existing directory, got "'),
    ('["../etc", "lapps.toml"]', 'server.lua_path[1]: expected an existing directory, got "'),
    ('"../etc"', 'server.lua_path: expected a list of directories, got "'),
    ('[""]', 'server.lua_path[0]: expected an existing directory, got ""'),
])
def test_lua_path_entries_must_be_existing_directories(site: Path, value: str, message: str) -> None:
    assert error_of(site, f"[server]\nlua_path = {value}\n").startswith(message)


def test_lua_path_survives_print_config(site: Path) -> None:
    (site / "lib").mkdir()
    config = load_config(write(site, '[server]\nlua_path = ["../lib"]\n[services.echo]\n'))
    again = load_config(write(site, to_toml(config), "printed.toml"))
    assert again == config and again.services["echo"].lua_path == (str(site / "lib"),)


def test_a_redis_url_is_refused_until_the_bus_exists(site: Path) -> None:
    message = error_of(site, "[cluster]\nredis_url = 'redis://127.0.0.1:6379/0'\n")
    assert message == ('cluster.redis_url: the Redis bus is not built yet (this server is one node), '
                       'expected "", got "redis://127.0.0.1:6379/0"')
