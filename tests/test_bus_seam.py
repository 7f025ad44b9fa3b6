"""The bus is one interface (lapps.ipc.interface.Bus) that workers/ get injected: no module
there names a backend, so another one (Redis) replaces the local one in lapps/cli.py alone,
and the local backend implements every operation of the interface as it is declared."""

from __future__ import annotations

import ast
import inspect

from conftest import REPO
from lapps.ipc.interface import Bus, OpenBus
from lapps.ipc.local import LocalBus, open_local_bus

BACKENDS = {"lapps.ipc.local", "lapps.ipc.mqr"}
ALLOWED_FROM_BUS = {"BusError"}   # the error every backend raises


def test_workers_import_no_bus_backend() -> None:
    found = []
    for path in sorted((REPO / "workers").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                found += [(path.name, a.name) for a in node.names if a.name in BACKENDS | {"lapps.ipc.bus"}]
            elif isinstance(node, ast.ImportFrom) and node.module:
                if node.module in BACKENDS:
                    found.append((path.name, node.module))
                elif node.module == "lapps.ipc.bus":
                    found += [(path.name, a.name) for a in node.names if a.name not in ALLOWED_FROM_BUS]
    assert found == []


def _operations(cls: type) -> dict[str, inspect.Signature]:
    return {name: inspect.signature(f) for name, f in vars(cls).items()
            if inspect.isfunction(f) and not name.startswith("_")}


def test_the_local_backend_implements_the_interface_as_declared() -> None:
    declared = _operations(Bus)
    assert set(declared) >= {"publish", "subscribe", "unsubscribe", "post", "try_recv", "recv", "attach", "close"}
    local = _operations(LocalBus)
    assert {name: local.get(name) for name in declared} == declared
    assert inspect.signature(open_local_bus) == inspect.signature(OpenBus.__call__).replace(
        parameters=list(inspect.signature(OpenBus.__call__).parameters.values())[1:])
