"""Where connectors may connect: the egress policy (``modelbus serve --allow-hosts``).

A ``listeners:manage`` key chooses the URLs a listener connects to; left open, it could
point a sink at the server's own API, at a cloud metadata service or at any internal
service the server can reach, and read the answer in the listener's status. An
:class:`Egress` decides, for a host (name or address) and port:

* always refused: link-local addresses (``169.254.0.0/16``, ``fe80::/10``: the cloud
  metadata services live there, ``169.254.169.254`` and ``fd00:ec2::254`` named too), the
  unspecified addresses, and the server's own API (its port on a loopback address, on its
  bound address, or on any of the machine's addresses);
* refused unless ``allow`` lists it: loopback (``127.0.0.0/8``, ``::1``, ``localhost``);
* allowed: everything else.

``allow`` lists CIDRs (``10.0.0.0/8``, ``127.0.0.1/32``, ``::1/128``), addresses and host
name patterns (``*.internal.example``, ``localhost``), as ``--allow-hosts`` takes them. A
host name is resolved and every address it resolves to is checked (a name allowed by
pattern is allowed whatever it resolves to, except to a link-local or metadata address or
the server itself). Checked when a connector is made (definition time: PolicyRefused) and,
for the HTTP webhook sink, again before each connection (the reply of a refused host is
never read).
"""

from __future__ import annotations

import asyncio
import fnmatch
import ipaddress
import socket
from collections.abc import Iterable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from modelbus.errors import PolicyRefused

__all__ = ["HOST_SCHEMES", "Egress", "hosts_of"]

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

# Schemes whose URL's netloc names hosts to connect to (the others name queues or folders).
HOST_SCHEMES = frozenset(
    {"http", "https", "redis", "rediss", "amqp", "amqps", "nats", "tls", "mqtt", "mqtts",
     "kafka", "postgresql", "postgres"}
)  # fmt: skip
_ALWAYS_REFUSED = tuple(
    ipaddress.ip_network(n)
    for n in ("169.254.0.0/16", "fe80::/10", "fd00:ec2::254/128", "0.0.0.0/32", "::/128")
)
_LOOPBACK = tuple(ipaddress.ip_network(n) for n in ("127.0.0.0/8", "::1/128"))
SETTING = "--allow-hosts (env MODELBUS_ALLOW_HOSTS)"


def hosts_of(url: str) -> list[tuple[str, int | None]]:
    """The (host, port) pairs a URL connects to (several for ``kafka://a:9092,b:9092``);
    none for a scheme that names no host (``local://``, ``sqs://QUEUE``...)."""
    parts = urlsplit(url)
    if parts.scheme not in HOST_SCHEMES:
        return []
    found = []
    for piece in parts.netloc.rpartition("@")[2].split(","):
        if not piece:
            continue
        one = urlsplit(f"//{piece}")
        if one.hostname:
            found.append((one.hostname, one.port))
    return found


@dataclass(frozen=True, kw_only=True, slots=True)
class Egress:
    """The egress policy (see the module docstring). ``own_port``: the server's API port;
    ``own_hosts``: the addresses it is bound to (a wildcard means every address here)."""

    allow: tuple[str, ...] = ()
    own_port: int | None = None
    own_hosts: tuple[str, ...] = ()
    _networks: tuple[Network, ...] = field(init=False, repr=False, compare=False)
    _patterns: tuple[str, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        networks: list[Network] = []
        patterns: list[str] = []
        for entry in (e.strip() for e in self.allow if e.strip()):
            try:
                networks.append(ipaddress.ip_network(entry.strip("[]"), strict=False))
            except ValueError:
                patterns.append(entry.lower().rstrip("."))
        object.__setattr__(self, "_networks", tuple(networks))
        object.__setattr__(self, "_patterns", tuple(patterns))

    # --- decisions ---------------------------------------------------------------------------

    def check_url(self, url: str, shown: str) -> None:
        """Check every host of ``url`` (resolved, blocking); PolicyRefused naming ``shown``
        (the URL with its credentials masked). A name that does not resolve now is left to
        the connection itself."""
        for host, port in hosts_of(url):
            self.check(host, port, _resolve(host, port), shown)

    async def check_connect(self, host: str, port: int | None, shown: str) -> None:
        """:meth:`check` with the addresses ``host`` resolves to now (before connecting)."""
        loop = asyncio.get_running_loop()
        try:
            infos = await loop.getaddrinfo(host, port or 0, type=socket.SOCK_STREAM)
        except OSError:
            addresses: list[str] = []
        else:
            addresses = [str(info[4][0]) for info in infos]
        self.check(host, port, addresses, shown)

    def check(self, host: str, port: int | None, addresses: Iterable[str], shown: str) -> None:
        """Refuse ``host`` (resolved to ``addresses``; an address literal is its own) with
        PolicyRefused saying why and naming the setting."""
        name = host.lower().strip("[]").rstrip(".")
        literal = _address(name)
        resolved = [literal] if literal else [a for a in map(_address, addresses) if a]
        by_pattern = literal is None and any(fnmatch.fnmatch(name, p) for p in self._patterns)
        for address in resolved:
            if any(address in net for net in _ALWAYS_REFUSED):
                raise PolicyRefused(
                    f"{shown}: {host} is a link-local or cloud metadata address "
                    f"({address}): connectors never connect there"
                )
            if port is not None and port == self.own_port and self._is_own(address):
                raise PolicyRefused(f"{shown}: {host}:{port} is this server's own API: refused")
            if by_pattern or self._allowed(address):
                continue
            if address.is_loopback or name == "localhost":
                raise PolicyRefused(
                    f"{shown}: {host} is a loopback address ({address}); allow it with "
                    f"{SETTING}, e.g. 127.0.0.1/32"
                )
        if not resolved and name == "localhost" and not by_pattern:
            raise PolicyRefused(f"{shown}: localhost is loopback; allow it with {SETTING}")

    def _allowed(self, address: Address) -> bool:
        return any(address.version == net.version and address in net for net in self._networks)

    def _is_own(self, address: Address) -> bool:
        if address.is_loopback:
            return True
        own = {a for h in self.own_hosts if (a := _address(h.strip("[]")))}
        if address in own:
            return True
        wildcard = any(h in ("", "0.0.0.0", "::") for h in self.own_hosts)
        return wildcard and address in _machine_addresses()


def _address(text: str) -> Address | None:
    try:
        return ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        return None


def _resolve(host: str, port: int | None) -> list[str]:
    if _address(host.strip("[]")) is not None:
        return []
    try:
        infos = socket.getaddrinfo(host, port or 0, type=socket.SOCK_STREAM)
    except OSError:
        return []
    return [str(info[4][0]) for info in infos]


def _machine_addresses() -> set[Address]:
    try:
        _, _, names = socket.gethostbyname_ex(socket.gethostname())
    except OSError:
        return set()
    return {a for n in names if (a := _address(n))}
