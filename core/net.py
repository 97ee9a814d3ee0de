"""Who is on the other end: one rule for the client address of HTTP and Flight SQL calls.

The address is what per-address login throttling counts and what the audit log records, so
a client must not be able to choose it: `X-Forwarded-For` is believed only when the peer that
sent it is a configured trusted proxy (setting `trusted_proxies`), and then only up to the
first address that is not itself a trusted proxy (walking from the right, as each proxy
appends the address it saw).
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Iterable, Sequence

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def trusted_networks(values: Iterable[str]) -> tuple[Network, ...]:
    """`["10.0.0.5", "192.168.0.0/16", "::1"]` → networks (ValueError names a bad entry)."""
    networks = []
    for value in values:
        try:
            networks.append(ipaddress.ip_network(value.strip(), strict=False))
        except ValueError:
            raise ValueError(f"not an IP address or network: {value!r}") from None
    return tuple(networks)


def peer_host(peer: str | None) -> str | None:
    """The host of a gRPC peer (`ipv4:127.0.0.1:5123`, `ipv6:[::1]:5123`) or of a plain `host:port`;
    the port is dropped, since every connection has its own."""
    if not peer:
        return None
    kind, sep, rest = peer.partition(":")
    if sep and kind in ("ipv4", "ipv6"):
        peer = rest
    elif sep and kind == "unix":
        return "unix"
    if peer.startswith("["):
        return peer[1 : peer.find("]")] if "]" in peer else peer
    host, sep, port = peer.rpartition(":")
    if sep and port.isdigit() and host.count(":") == 0:
        return host
    return peer


def client_address(peer: str | None, forwarded_for: str | None, trusted: Sequence[Network]) -> str | None:
    """The caller's address: the peer's, or (when the peer is a trusted proxy) the right-most
    `X-Forwarded-For` entry that is not a trusted proxy."""
    if peer is None or not trusted or not forwarded_for or not _is_trusted(peer, trusted):
        return peer
    hops = [h.strip() for h in forwarded_for.split(",") if h.strip()]
    for hop in reversed(hops):
        if not _is_trusted(hop, trusted):
            return hop if _is_ip(hop) else peer
    return hops[0] if hops and _is_ip(hops[0]) else peer


def address_behind(peer: str | None, forwarded_for: str | None, trusted_proxies: Sequence[str]) -> str | None:
    """`client_address` with the configured proxies (`Settings.trusted_proxies`), parsed once per distinct list:
    HTTP's rule for the API and the web pages alike."""
    return client_address(peer, forwarded_for, _networks(tuple(trusted_proxies)))


@functools.lru_cache(maxsize=8)
def _networks(values: tuple[str, ...]) -> tuple[Network, ...]:
    return trusted_networks(values)


def _is_ip(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


def _is_trusted(value: str, trusted: Sequence[Network]) -> bool:
    try:
        address = ipaddress.ip_address(value)
    except ValueError:
        return False
    return any(address in network for network in trusted)
