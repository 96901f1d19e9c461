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
    # Walk the chain from the nearest hop outwards; the first untrusted hop is the client.
    hops = [hop.strip() for hop in connection.headers.get("x-forwarded-for", "").split(",")]
    for hop in reversed([hop for hop in hops if hop]):
        if not _is_trusted(hop, trusted):
            return hop
    return peer
