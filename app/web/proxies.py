"""Who the client is: the peer, or what a trusted reverse proxy says the client was.

``X-Forwarded-For`` is a list anyone can start: a client sends one of its choosing, and each proxy
appends the address it got the request from. So it is believed only when the peer is one of the
configured ``trusted_proxies``, and then only up to the first hop that is not itself a trusted proxy,
read from the right: everything left of that hop was written by the client. uvicorn's own
``proxy_headers`` is off where clinann starts it (it trusts 127.0.0.1 by default, which behind
docker-compose's port mapping or a local proxy is every client); ``TrustedProxies`` does it instead,
so that the audit trail, login sessions and login throttling all see the one address decided here.
"""

import ipaddress
from collections.abc import Sequence

from starlette.types import ASGIApp, Receive, Scope, Send

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def _parse_address(text: str) -> IPAddress | None:
    """An address as proxies write it: bare, ``[v6]`` or ``[v6]:port``, or ``v4:port``."""
    text = text.strip()
    if text.startswith("["):
        text = text[1 : text.find("]")] if "]" in text else text
    elif text.count(":") == 1:
        text = text.split(":", 1)[0]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    # An IPv4 client reaching an IPv6 socket shows as ::ffff:a.b.c.d; count it as the IPv4 one.
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _is_trusted(address: IPAddress | None, trusted: Sequence[IPNetwork]) -> bool:
    return address is not None and any(address in network for network in trusted)


def client_address(
    peer: str | None, forwarded_for: Sequence[str], trusted: Sequence[IPNetwork]
) -> str | None:
    """The client's address for a request from ``peer`` carrying these X-Forwarded-For headers.

    From an untrusted peer (or with no trusted proxies) the peer itself, header ignored. From a
    trusted one, the right-most hop that is not a trusted proxy; when every hop is trusted (a proxy's
    own request), the left-most; when the header is missing, or the hop to take is not an address,
    the nearest trusted hop, since nothing further can be vouched for.
    """
    peer_address = _parse_address(peer) if peer else None
    if not _is_trusted(peer_address, trusted):
        return peer
    nearest = str(peer_address)
    hops = [hop for header in forwarded_for for hop in header.split(",") if hop.strip()]
    for hop in reversed(hops):
        address = _parse_address(hop)
        if address is None:
            return nearest
        nearest = str(address)
        if not _is_trusted(address, trusted):
            return nearest
    return nearest


class TrustedProxies:
    """Sets the request's client (and scheme) from a trusted proxy's headers, as decided above.

    Without trusted proxies it passes every request through untouched: nothing is read or copied.
    """

    def __init__(self, app: ASGIApp, trusted: Sequence[IPNetwork]) -> None:
        self.app = app
        self.trusted = tuple(trusted)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.trusted and scope["type"] in ("http", "websocket"):
            peer_host, peer_port = scope.get("client") or (None, 0)
            if _is_trusted(_parse_address(peer_host) if peer_host else None, self.trusted):
                forwarded_for = [v.decode("latin-1") for k, v in scope["headers"] if k == b"x-forwarded-for"]
                scope = dict(scope)
                scope["client"] = (client_address(peer_host, forwarded_for, self.trusted), peer_port)
                proto = [v.decode("latin-1") for k, v in scope["headers"] if k == b"x-forwarded-proto"]
                # The proxy nearest us appends (or sets) the last value: the scheme its client used.
                scheme = proto[-1].rsplit(",", 1)[-1].strip().lower() if proto else ""
                if scheme in ("http", "https"):
                    scope["scheme"] = scheme if scope["type"] == "http" else scheme.replace("http", "ws")
        await self.app(scope, receive, send)
