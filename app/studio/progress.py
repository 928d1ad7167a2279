"""How far a long request has got, for a client that polls while it waits (Score-CAM on a wide layer runs
the model hundreds of times).

A client names the request it wants to follow with a token of its own choosing; the request's worker
thread writes its progress here and a cheap poll reads it. Requests in flight are on the board, and for a
moment after they end, whatever the outcome, as `finished`: a poll that crossed the answer on its way gets
that, not a 404 (which a browser logs as an error); then the token is forgotten.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from app.engine.cam import METHODS

TOKEN_PATTERN = r"^[A-Za-z0-9_-]{8,64}$"  # long enough to be unguessable when random; safe in a URL path
STARTING = "starting"  # queued for a worker thread, reading the image
WAITING = "waiting"  # for the model's lock: another request is using the model
MAPS = "maps"  # the shared pass and the methods that need nothing more
SCORING = "scoring"  # scoring the maps' faithfulness (the images done of total)
RENDERING = "rendering"  # a feature visualisation's optimisation (the steps done of total)
FINISHED = "finished"  # the request has ended (listed FINISHED_SECONDS longer)
FINISHED_SECONDS = 2.0  # polls come every half second: one in flight as the request ends still finds it
# Between MAPS and SCORING, a method's id while it runs (a perturbation method: its images done of total).


class RequestProgress:
    """One request's task and how many of that task's model inputs have run."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._started = self._task_started = time.monotonic()
        self._task, self._done, self._total = STARTING, 0, 0
        self.finished_at: float | None = None

    def __call__(self, task: str, done: int = 0, total: int = 0) -> None:
        """The request is at `task`, `done` of its `total` images run (0 of 0 for a task not counted)."""
        with self._lock:
            if task != self._task:
                self._task_started = time.monotonic()
            self._task, self._done, self._total = task, done, total

    def count_from(self, other: RequestProgress) -> None:
        """Count the request's seconds from when `other` began: the same request, followed since it arrived."""
        with other._lock:
            started = other._started
        with self._lock:
            self._started = started

    def carry_on_from(self, other: RequestProgress) -> None:
        """Take the task and counts `other` reached: the part of the request it followed is over, not the request."""
        with other._lock:
            task, done, total, task_started = other._task, other._done, other._total, other._task_started
        with self._lock:
            self._task, self._done, self._total, self._task_started = task, done, total, task_started

    def finish(self) -> None:
        with self._lock:
            done, total = self._done, self._total
        self(FINISHED, done, total)
        self.finished_at = time.monotonic()

    def snapshot(self) -> dict:
        now = time.monotonic()
        with self._lock:
            return {"task": self._task, "done": self._done, "total": self._total,
                    "seconds": round(now - self._started, 3), "task_seconds": round(now - self._task_started, 3),
                    "note": describe_task(self._task, self._done, self._total)}


def describe_task(task: str, done: int, total: int) -> str:
    """A task in words for people; empty for the quick ones (starting, the shared pass)."""
    if task == WAITING:
        return "waiting for the model (another request is using it)"
    count = f"{done:,} of {total:,}"
    if task == SCORING:
        return f"{count} images" if total else ""
    if task == RENDERING:
        return f"rendering: step {count}" if total else ""
    method = METHODS.get(task)
    if method is None or not total:
        return ""
    return f"{method.name}: {count} {method.counts or 'passes'}"


class ProgressBoard:
    """The followed requests in flight, by token. Past `capacity` a request still runs, unfollowed."""

    def __init__(self, capacity: int = 256) -> None:
        self.capacity = capacity
        self._lock = threading.Lock()
        self._requests: dict[str, RequestProgress] = {}

    @contextmanager
    def follow(self, token: str | None) -> Iterator[RequestProgress]:
        """A progress record for the request, readable under `token` (if given) until the block ends. Within a
        block that follows the same token (the request's record since its arrival, app/api/followed.py), it
        takes over and, at its end, hands back what it reached: the request is finished when the outer ends."""
        progress = RequestProgress()
        arrived = None
        with self._lock:
            self._forget_finished()
            listed = token is not None and (token in self._requests or len(self._requests) < self.capacity)
            if listed:
                arrived = self._requests.get(token)
                if arrived is not None and arrived.finished_at is not None:
                    arrived = None
                if arrived is not None:
                    progress.count_from(arrived)
                self._requests[token] = progress  # a reused token follows its latest request
        try:
            yield progress
        finally:
            if listed:
                with self._lock:
                    if self._requests.get(token) is progress:
                        if arrived is not None and arrived.finished_at is None:
                            arrived.carry_on_from(progress)
                            self._requests[token] = arrived
                        else:
                            progress.finish()

    def get(self, token: str) -> dict | None:
        with self._lock:
            self._forget_finished()
            progress = self._requests.get(token)
        return None if progress is None else progress.snapshot()

    def _forget_finished(self) -> None:
        now = time.monotonic()
        for token in [t for t, p in self._requests.items()
                      if p.finished_at is not None and now - p.finished_at > FINISHED_SECONDS]:
            del self._requests[token]
