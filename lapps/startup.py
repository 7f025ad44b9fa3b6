"""Which services a server starts, and in what order (pure: a Config in, names out).

As in the original's Deployer: every service with `auto_start = true` starts, and before it
whatever it `depends` on, recursively, even a service that has `auto_start = false` (the
original started a dependency it found not running). A service nothing starts is not served:
a reactive one's request target answers 404, a standalone one runs no process. The config
already refused unknown names and cycles in `depends`.
"""

from __future__ import annotations

from .config import Config


def start_order(config: Config) -> list[str]:
    """The services to start, each after the services it depends on."""
    order: list[str] = []

    def visit(name: str) -> None:
        if name in order:
            return
        for dep in config.services[name].depends:
            visit(dep)
        order.append(name)

    for name, svc in config.services.items():
        if svc.auto_start:
            visit(name)
    return order


def standalone_order(config: Config) -> list[str]:
    """The standalone services of `start_order`: the master's processes to start."""
    return [name for name in start_order(config) if config.services[name].standalone]


def reactive_order(config: Config) -> list[str]:
    """The reactive services of `start_order`: what each IO worker loads, in that order, so
    a service's onStart() runs after those of the services it depends on."""
    return [name for name in start_order(config) if not config.services[name].standalone]
