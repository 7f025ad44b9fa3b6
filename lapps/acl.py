"""Address-based admission: a policy and its exceptions (DESIGN §2 `acl`).

Pure logic with two users, so it lives beside both rather than in either's room: the master's
listeners close a connection the server ACL refuses at accept, a worker's service routes answer
403 for a service ACL (workers never import lapps.master: the contracts in pyproject.toml)."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable


class Acl:
    """`policy` "allow" admits everyone but `exclude`; "deny" admits only `exclude`."""

    __slots__ = ("allow_by_default", "networks")

    def __init__(self, policy: str, exclude: Iterable[str]) -> None:
        self.allow_by_default = policy == "allow"
        self.networks = tuple(ipaddress.ip_network(e, strict=False) for e in exclude)

    def allows(self, address: str) -> bool:
        if not self.networks:
            return self.allow_by_default
        ip = ipaddress.ip_address(address.split("%", 1)[0])
        if ip.version == 6 and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        listed = any(ip in net for net in self.networks)
        return self.allow_by_default != listed
