"""The sandbox of one Lua state, in this process (lapps/lua/sandbox.py): what differs between
a state with an instruction budget and one without, `require` and lua_path, host objects.

The attempts against the real server are in test_sandbox_escapes.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from lapps.lua.runtime import LuaError, new_runtime

REFUSED = "is refused by the sandbox"


def run(runtime, code: str):
    return runtime.guarded(runtime.lua.eval(f"function() {code} end".encode()))()


def test_a_state_without_a_budget_keeps_the_jit(tmp_path: Path) -> None:
    free = new_runtime("free", str(tmp_path))
    assert run(free, "return (jit.status())") is True
    assert run(free, "jit.off() jit.on() return (jit.status())") is True
    assert run(free, "return type(jit.opt.start), type(require('jit.util').funcinfo)") == (
        b"function", b"function")


def test_a_budgeted_state_runs_interpreted_and_cannot_switch_the_jit_on(tmp_path: Path) -> None:
    budgeted = new_runtime("budgeted", str(tmp_path), instruction_budget=10_000_000)
    assert run(budgeted, "return (jit.status())") is False
    with pytest.raises(LuaError, match=f"jit.on {REFUSED}"):
        run(budgeted, "jit.on()")
    version, newer, arch = run(budgeted, "return jit.version, jit.version_num >= 20100, type(jit.arch)")
    assert version.startswith(b"LuaJIT 2.1") and newer is True and arch == b"string"


@pytest.mark.parametrize("budget", [0, 10_000_000], ids=["jit", "budget"])
def test_both_kinds_of_state_refuse_bytecode_ffi_and_raw_pointers(tmp_path: Path, budget: int) -> None:
    runtime = new_runtime("svc", str(tmp_path), instruction_budget=budget)
    assert run(runtime, "return string.dump") is None
    assert run(runtime, r"return select(2, loadstring('\27LJ\2'))").startswith(b"binary chunks are refused")
    for module in ("ffi", "string.buffer", "python"):
        with pytest.raises(LuaError, match=f'require\\("{module}"\\) {REFUSED}'):
            run(runtime, f"require('{module}')")


def test_host_objects_keep_their_metatable_hidden(tmp_path: Path) -> None:
    # the one kind of Python object a service can hold: an error a host function raised
    runtime = new_runtime("svc", str(tmp_path), instruction_budget=10_000_000)

    def host_function() -> None:
        raise RuntimeError("host failure")

    runtime.lua.globals().host_function = host_function
    kind, shown = run(runtime, "local ok, e = pcall(host_function) return type(e), getmetatable(e)")
    assert (kind, shown) == (b"userdata", b"host object")
    assert run(runtime, "return getmetatable(host_function)") == b"host object"


def test_lua_path_loads_dotted_names_and_init_modules_after_the_service_folder(tmp_path: Path) -> None:
    service, rocks = tmp_path / "svc", tmp_path / "rocks"
    (rocks / "a").mkdir(parents=True)
    (rocks / "pkg").mkdir()
    service.mkdir()
    (rocks / "a" / "b.lua").write_text("return { name = ... }")
    (rocks / "pkg" / "init.lua").write_text("return 'pkg from init.lua'")
    (rocks / "shadowed.lua").write_text("return 'from lua_path'")
    (service / "shadowed.lua").write_text("return 'from the service folder'")
    runtime = new_runtime("svc", str(service), instruction_budget=10_000_000, lua_path=(str(rocks),))
    assert run(runtime, "return require('a.b').name, require('pkg'), require('shadowed')") == (
        b"a.b", b"pkg from init.lua", b"from the service folder")
    assert run(runtime, "return package.path") == (
        f"{service}/?.lua;{service}/?/init.lua;{rocks}/?.lua;{rocks}/?/init.lua".encode())


def test_a_syntax_error_in_a_required_module_names_the_file(tmp_path: Path) -> None:
    (tmp_path / "broken.lua").write_text("return = 1")
    runtime = new_runtime("svc", str(tmp_path))
    with pytest.raises(LuaError, match=r"error loading module 'broken' from file '.*broken.lua'"):
        run(runtime, "require('broken')")


def test_pcall_still_catches_ordinary_errors_and_passes_values_through(tmp_path: Path) -> None:
    runtime = new_runtime("svc", str(tmp_path), instruction_budget=10_000_000)
    assert run(runtime, "return pcall(error, 'plain')") == (False, b"plain")
    assert run(runtime, "return pcall(function(a, b) return a + b, 'x' end, 1, 2)") == (True, 3, b"x")
    assert run(runtime, "return xpcall(error, function(e) return 'handled ' .. e end, 'e')") == (
        False, b"handled e")
    # a caught error inside gsub's callback gives its nesting level back
    assert run(runtime, "for i = 1, 500 do pcall(string.gsub, 'a', '.', error) end return 'ok'") == b"ok"


def test_allow_exec_grants_io_but_not_bytecode_nor_the_file_metatable(tmp_path: Path) -> None:
    runtime = new_runtime("svc", str(tmp_path), allow_exec=True, instruction_budget=10_000_000)
    # a service that may write files writes a bytecode module: require still refuses it
    target = tmp_path / "written.lua"
    run(runtime, rf"local f = assert(io.open('{target}', 'wb')) f:write('\27LJ\2\0') f:close()")
    assert target.read_bytes().startswith(b"\x1bLJ")
    with pytest.raises(LuaError, match="binary chunks are refused by the sandbox"):
        run(runtime, "require('written')")
    assert run(runtime, "return getmetatable(io.stdout)") == b"file"
    assert run(runtime, "return type(os.execute), type(package.searchpath)") == (b"function", b"function")
