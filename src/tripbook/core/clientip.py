"""The client's address, trusting ``X-Forwarded-For`` only from configured proxies."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address

from starlette.requests import HTTPConnection

Networks = list[IPv4Network | IPv6Network]


def _is_trusted(address: str, trusted: Networks) -> bool:
    try:
        parsed: IPv4Address | IPv6Address = ip_address(address)
    except ValueError:
        return False
    return any(parsed in network for network in trusted)


def client_ip(connection: HTTPConnection, trusted: Networks) -> str:
    peer = connection.client.host if connection.client else "unknown"
    if not trusted or not _is_trusted(peer, trusted):
        return peer
    # Several header lines are one list (RFC 9110 §5.3): a proxy that adds its own line
    # must not let the client's forged first line win.
    chain = ",".join(connection.headers.getlist("x-forwarded-for"))
    hops = [hop.strip() for hop in chain.split(",") if hop.strip()]
    # Walk the chain from the nearest hop outwards; the first untrusted hop is the client.
    for hop in reversed(hops):
        if not _is_trusted(hop, trusted):
            return hop
    # Every hop is a trusted proxy: the request began at the furthest of them.
    return hops[0] if hops else peer
