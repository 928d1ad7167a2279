"""uvicorn's h11 protocol with a read timeout. uvicorn closes a connection that stays idle after an answer
(timeout_keep_alive), but not one that never finishes a request: a client that connects and says nothing,
or sends half a head, or stops half-way through a body, holds its connection open forever (h11 has no
timer of its own, and uvicorn offers none). Here a request head must arrive within `read_timeout` seconds
of the connection opening (after an answer: of its first bytes; an idle connection is the keep-alive's to
close), and a body may pause for at most `read_timeout`.
While the server itself is busy (computing an answer, or not reading because the app has not taken the
body it was given), nothing is timed."""

from __future__ import annotations

import asyncio

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol


class ReadTimeoutH11Protocol(H11Protocol):
    read_timeout: float = 30.0  # seconds; `with_read_timeout` makes a class with another value

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self._read_timer: asyncio.TimerHandle | None = None
        super().connection_made(transport)
        self._follow_client()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        self._follow_client()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        # Idle between requests is the keep-alive's to end (timeout_keep_alive, longer than clients' pools keep
        # a connection); the next head is timed from its first bytes, in data_received.
        self._follow_client(between_requests=True)

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_timer()
        super().connection_lost(exc)

    def _follow_client(self, between_requests: bool = False) -> None:
        """Time what the connection now waits for from the client, if anything."""
        if self.transport.is_closing():
            self._stop_timer()
        elif self.conn.their_state is h11.SEND_BODY:
            self._start_timer()  # a body: the timer restarts with every piece of it
        elif self.conn.their_state is h11.IDLE:
            if between_requests:
                self._stop_timer()
            elif self._read_timer is None:
                self._start_timer()  # a head: the whole of it within one period, however it trickles in
        else:
            self._stop_timer()  # the request is in: the wait is the server's, not the client's

    def _start_timer(self) -> None:
        self._stop_timer()
        self._read_timer = self.loop.call_later(self.read_timeout, self._read_timed_out)

    def _stop_timer(self) -> None:
        if self._read_timer is not None:
            self._read_timer.cancel()
            self._read_timer = None

    def _read_timed_out(self) -> None:
        self._read_timer = None
        if self.flow.read_paused:
            self._start_timer()  # the app has not taken the body it has: the client is not the one waiting
        elif not self.transport.is_closing():
            self.transport.close()


def with_read_timeout(seconds: float) -> type[ReadTimeoutH11Protocol]:
    """The protocol class to give uvicorn (`http=`) for a read timeout of `seconds`."""
    return type("ReadTimeoutH11Protocol", (ReadTimeoutH11Protocol,), {"read_timeout": seconds})
