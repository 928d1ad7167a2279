"""Refuse request bodies over a limit while they stream in, before any parser spools them to disk: a
multipart upload is parsed in full before a route runs, so the route alone cannot stop a 10 GB body."""

from __future__ import annotations

from app.api.errors import error_response

_MULTIPART_OVERHEAD = 64 * 1024  # boundaries and part headers around the file itself


class BodyLimit:
    """ASGI middleware: POST bodies to `path` (or to any path ending in `path_suffix`) larger than `limit`
    (+ the multipart overhead when `multipart`) get a 413."""

    def __init__(self, app, limit: int, path: str | None = None, path_suffix: str | None = None,
                 multipart: bool = True):
        self.app, self.path, self.suffix = app, path, path_suffix
        self.limit = limit + (_MULTIPART_OVERHEAD if multipart else 0)

    def _applies(self, path: str) -> bool:
        path = path.rstrip("/")
        return path == self.path if self.path is not None else path.endswith(self.suffix)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] != "POST" or not self._applies(scope["path"]):
            return await self.app(scope, receive, send)
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            return await self._refuse(scope, receive, send)
        received, too_large, refused = 0, False, False

        async def counting_receive():
            nonlocal received, too_large
            if not too_large:
                message = await receive()
                if message["type"] != "http.request":
                    return message
                received += len(message.get("body", b""))
                too_large = received > self.limit
                if not too_large:
                    return message
            return {"type": "http.request", "body": b"", "more_body": False}  # the rest is never read

        async def guarded_send(message):
            # FastAPI turns any failure while parsing a form into its own 400; whatever the app answers
            # to a cut-off body, the client gets the 413 instead.
            nonlocal refused
            if not too_large:
                return await send(message)
            if not refused:
                refused = True
                await self._refuse(scope, receive, send)

        await self.app(scope, counting_receive, guarded_send)

    async def _refuse(self, scope, receive, send):
        limit = self.limit - _MULTIPART_OVERHEAD
        response = error_response(413, "payload_too_large",
                                  f"the request body is over {limit:,} bytes (upload_max_bytes)", limit=limit)
        await response(scope, receive, send)
