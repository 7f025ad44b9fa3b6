"""The one table of host modules (lapps/lua/modules HOST_MODULES) and the host's .lua files.

The table is read where no Lua runs (the master reads the config; `migrate-config` and
`check-config` are plain Python), so reading it must not load lupa. Every installer it
names must be there, and every Lua source of the host must ship in a non-editable install
(the Debian package), which takes only what pyproject's package-data globs name.
"""

from __future__ import annotations

import fnmatch
import subprocess
import sys
import tomllib

import pytest

from conftest import REPO
from lapps.config import PRELOAD_MODULES
from lapps.lua.modules import HOST_MODULES, PRELOAD, STANDALONE_ONLY, HostModule, NotOffered
from lapps.lua.runtime import lua_type, new_runtime
from lapps.lua.values import LuaValues


def test_config_migrate_and_check_config_read_the_table_without_lupa():
    code = ("import sys, lapps.config, lapps.migrate, lapps.commands.config\n"
            "print('lupa' in sys.modules, lapps.config.PRELOAD_MODULES, lapps.migrate.STANDALONE_ONLY)")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.split(None, 1) == ["False", f"{PRELOAD_MODULES} {STANDALONE_ONLY}\n"]


def test_preload_names_and_standalone_only_come_from_the_table():
    assert PRELOAD_MODULES == tuple(n for n, m in HOST_MODULES.items() if m.when == PRELOAD)
    assert set(STANDALONE_ONLY) == {"nap", "cws"}
    assert set(HOST_MODULES) == {"nljson", "nap", "time", "murmur", "mqr", "cws", "bcast", "ws"}


@pytest.mark.parametrize("name", sorted(HOST_MODULES))
def test_each_installer_builds_its_module_table(name: str):
    runtime = new_runtime("modules", str(REPO))
    offered = {"lua": runtime.lua, "values": LuaValues(runtime.lua), "directory": str(REPO)}
    module = HOST_MODULES[name]
    if set(module.needs) <= set(offered):
        table = module.install(offered)
        assert lua_type(table) == "table"
    else:   # mqr, cws, bcast and ws need what only a hosting process offers
        with pytest.raises(NotOffered, match=f"^{name} is not available here$"):
            module.install(offered)


def test_an_installer_that_is_not_there_fails_when_installed():
    ghost = HostModule("ghost", "basic:install_ghost", ("lua",))
    with pytest.raises(AttributeError, match="install_ghost"):
        ghost.install({"lua": object()})


def test_every_lua_source_of_the_host_ships_in_the_package():
    globs = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    sources = sorted((REPO / "lapps").rglob("*.lua"))
    assert len(sources) >= 11
    for path in sources:
        package = ".".join(path.parent.relative_to(REPO).parts)
        assert any(fnmatch.fnmatch(path.name, g) for g in globs.get(package, [])), \
            f"{path.relative_to(REPO)}: no package-data glob of {package} takes it"
