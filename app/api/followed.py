"""A followed request (header X-Progress-Token) is on the progress board from the moment it arrives: while it
waits for a worker thread or a compute slot, a poll finds it `starting` rather than a 404, which a browser
logs as an error. The route's own record (ProgressBoard.follow) takes the token over once it runs."""

from __future__ import annotations

import re

from app.studio.progress import TOKEN_PATTERN, ProgressBoard

_HEADER = b"x-progress-token"


class FollowFromArrival:
    """ASGI middleware: each request with a well-formed progress token, followed until its answer is sent."""

    def __init__(self, app, board: ProgressBoard):
        self.app, self.board = app, board

    async def __call__(self, scope, receive, send):
        token = _token(scope) if scope["type"] == "http" else None
        if token is None:
            return await self.app(scope, receive, send)
        with self.board.follow(token):
            await self.app(scope, receive, send)


def _token(scope) -> str | None:
    value = dict(scope["headers"]).get(_HEADER)
    if value is None:
        return None
    token = value.decode("latin-1")
    return token if re.fullmatch(TOKEN_PATTERN, token) else None
