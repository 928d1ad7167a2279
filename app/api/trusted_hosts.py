"""Answer only requests whose Host header names this server. A page on another site can rebind its own DNS
name to 127.0.0.1 and then read a server bound to localhost from the visitor's browser, as same-origin;
its requests still carry its own name in Host, and that is what is checked here.

Starlette's TrustedHostMiddleware does the same, but answers in plain text and cuts `[::1]:8000` at its
first colon (so IPv6 hosts can never match); this answers in the API's error shape."""

from __future__ import annotations

from app.api.errors import error_response


class TrustedHosts:
    """ASGI middleware: `allowed` holds host names, `*.example.org` for its subdomains, or `*` for any."""

    def __init__(self, app, allowed: list[str]):
        self.app, self.any = app, "*" in allowed
        self.names = {host.lower() for host in allowed if not host.startswith("*.")}
        self.suffixes = tuple(host[1:].lower() for host in allowed if host.startswith("*."))

    async def __call__(self, scope, receive, send):
        if self.any or scope["type"] not in ("http", "websocket"):
            return await self.app(scope, receive, send)
        header = dict(scope["headers"]).get(b"host", b"").decode("latin-1")
        if self.allows(host_name(header)):
            return await self.app(scope, receive, send)
        if scope["type"] == "websocket":
            return await send({"type": "websocket.close", "code": 1008})
        response = error_response(400, "invalid_host",
                                  f"this server does not answer to the host {header!r}; if you reach it by that "
                                  "name, add it to the allowed_hosts setting (FOVEA_ALLOWED_HOSTS)", host=header)
        await response(scope, receive, send)

    def allows(self, host: str) -> bool:
        return host in self.names or bool(self.suffixes and host.endswith(self.suffixes))


def host_name(header: str) -> str:
    """The host of a Host header, without its port or a final dot, lower case: `[::1]:8000` is `::1`."""
    if header.startswith("["):
        host = header[1:].partition("]")[0]
    else:
        host = header.partition(":")[0]
    return host.rstrip(".").lower()
