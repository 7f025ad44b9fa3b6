"""docs/lua-api.md against what the Lua states of a real server hold, both ways.

One server runs six probe services: reactive raw and LAppS-protocol ones and standalone ones,
each with and without `preload`. Each prints, at start, every global it sees beyond the Lua
standard library, every key of each host module table, and the members of the objects the
modules make (an mqr queue, a nap sleeper, a cws client). The test compares that with the
document's tables: which global is set where, and each module's functions.
"""

from __future__ import annotations

import re
from collections import defaultdict

import pytest

from conftest import REPO

DOC = REPO / "docs" / "lua-api.md"
# Lua 5.1 / LuaJIT's own globals, and lupa's `python` table (the sandbox's business: README,
# "Sandbox and limits"); `print` is not here, since the server replaces it.
STANDARD = ("_G _VERSION assert bit collectgarbage coroutine debug dofile error gcinfo getfenv getmetatable io "
            "ipairs jit load loadfile loadstring math module newproxy next os package pairs pcall python rawequal "
            "rawget rawset require select setfenv setmetatable string table tonumber tostring type unpack "
            "xpcall")
ALL_PRELOADS = ["nap", "time", "murmur", "mqr", "cws"]
REACTIVE_PRELOADS = ["time", "murmur", "mqr"]
# probe service -> (kind, preload)
PROBES = {
    "api_raw": ("raw", []), "api_raw_pre": ("raw", REACTIVE_PRELOADS),
    "api_lapps": ("lapps", []), "api_lapps_pre": ("lapps", REACTIVE_PRELOADS),
    "api_st": ("standalone", ["nap"]), "api_st_pre": ("standalone", ALL_PRELOADS),
}
WHERE = {   # the document's words -> which probes must have the global
    "all": lambda kind, preload, name: True,
    "reactive": lambda kind, preload, name: kind != "standalone",
    "lapps + standalone": lambda kind, preload, name: kind != "raw",
    "standalone": lambda kind, preload, name: kind == "standalone",
    "preload": lambda kind, preload, name: name in preload,
    "preload, standalone": lambda kind, preload, name: kind == "standalone" and name in preload,
}
OBJECT_OF = {"q": "mqr", "n": "nap", "c": "cws"}   # the document's names for module-made objects

DUMP = """
local STD = {}
for w in (%(std)r):gmatch("%%S+") do STD[w] = true end
local function say(...) print("API %(label)s " .. table.concat({...}, " ")) end
local function dump()
  local names = {}
  for k in pairs(_G) do if type(k) == "string" and not STD[k] then names[#names + 1] = k end end
  table.sort(names)
  for _, k in ipairs(names) do
    say("G", k)
    if type(_G[k]) == "table" then for m in pairs(_G[k]) do say("M", k, tostring(m)) end end
  end
  if mqr then for m in pairs(mqr.create("api_probe")) do say("O", "q", tostring(m)) end end
  if nap then
    local n = nap:new()
    for _, m in ipairs({%(nap_methods)s}) do if n[m] ~= nil then say("O", "n", m) end end
  end
  if cws then
    local c = cws:new("ws://127.0.0.1:9/", {})
    for m in pairs(c) do say("O", "c", tostring(m)) end
    c:close()
  end
  say("END")
end
"""
REACTIVE = DUMP + """
local s = {}
function s.onStart() dump() end
function s.onShutdown() end
function s.onDisconnect(h) end
function s.onMessage(h, t, m) return true end
return s
"""
STANDALONE = DUMP + """
local s = {}
function s.init() dump() end
function s.run() local n = nap:new() while not must_stop() do n:sleep(0.05) end end
return s
"""


def documented() -> tuple[dict[str, str], dict[str, set[str]], dict[str, set[str]]]:
    """(global -> where, module -> its documented keys, object letter -> its documented keys)."""
    text = DOC.read_text()
    sections = re.split(r"^## ", text, flags=re.M)
    where: dict[str, str] = {}
    members: dict[str, set[str]] = defaultdict(set)
    objects: dict[str, set[str]] = defaultdict(set)
    for section in sections:
        title, _, body = section.partition("\n")
        rows = [line.split("|")[1:-1] for line in body.splitlines() if line.startswith("| `")]
        if title.strip() == "Globals":
            for cells in rows:
                where[cells[0].strip().strip("`")] = cells[1].strip()
            continue
        module = re.fullmatch(r"`(\w+)`", title.strip())
        if not module:
            continue
        module = module.group(1)
        for cells in rows:
            m = re.match(r"`(\w+)([.:])(\w+)", cells[0].strip())
            assert m, f"{DOC}: a row of `{module}` that names no function: {cells[0]}"
            prefix, name = m.group(1), m.group(3)
            if prefix == module:
                members[module].add(name)
            else:
                assert OBJECT_OF.get(prefix) == module, f"{DOC}: `{prefix}` in the `{module}` section"
                objects[prefix].add(name)
    return where, members, objects


@pytest.fixture(scope="module")
def seen(lapps_server_module):
    """probe -> the lines its Lua state printed (kind, *names)."""
    _, _, objects = documented()
    nap_methods = ", ".join(f'"{m}"' for m in sorted(objects["n"]))
    lua, services = {}, {}
    for name, (kind, preload) in PROBES.items():
        source = STANDALONE if kind == "standalone" else REACTIVE
        lua[name] = source % {"std": STANDARD, "label": name, "nap_methods": nap_methods}
        services[name] = {"preload": preload, "standalone": kind == "standalone",
                          **({"protocol": "lapps"} if kind == "lapps" else {})}
    server = lapps_server_module(services, lua=lua)
    for name in PROBES:
        server.wait_log(rf"API {name} END", timeout=10)
    out: dict[str, list[list[str]]] = defaultdict(list)
    for line in server.log().splitlines():
        m = re.search(r"API (\w+) (.*)$", line)
        if m and m.group(1) in PROBES:
            out[m.group(1)].append(m.group(2).split())
    return out


def test_lua_api_globals_are_set_where_the_document_says(seen):
    where, _, _ = documented()
    unknown = set(where.values()) - set(WHERE)
    assert not unknown, f"{DOC}: unknown 'where' words {unknown}"
    expected = {(probe, g) for probe, (kind, preload) in PROBES.items()
                for g, w in where.items() if WHERE[w](kind, preload, g)}
    actual = {(probe, line[1]) for probe, lines in seen.items() for line in lines if line[0] == "G"}
    assert actual - expected == set(), "globals the document does not list there"
    assert expected - actual == set(), "globals the document lists that are not there"


def test_lua_api_every_module_function_is_documented_and_exists(seen):
    _, members, _ = documented()
    actual: dict[str, set[str]] = defaultdict(set)
    for probe, lines in seen.items():
        for kind, *rest in lines:
            if kind == "M":
                actual[rest[0]].add(rest[1])
    for module in set(actual) | set(members):
        assert actual[module] == members[module], f"module {module}: code {sorted(actual[module])}, " \
                                                  f"document {sorted(members[module])}"


def test_lua_api_objects_members(seen):
    _, _, objects = documented()
    actual: dict[str, set[str]] = defaultdict(set)
    for lines in seen.values():
        for kind, *rest in lines:
            if kind == "O":
                actual[rest[0]].add(rest[1])
    assert actual["q"] == objects["q"]           # an mqr queue is a plain table: both ways
    assert actual["c"] == objects["c"]           # so is a cws client
    assert actual["n"] == objects["n"] != set()  # a sleeper's methods hide behind its metatable


def test_lua_api_document_names_every_preload_module():
    from lapps.config import PRELOAD_MODULES
    where, _, _ = documented()
    assert {g for g, w in where.items() if w.startswith("preload")} == set(PRELOAD_MODULES)
