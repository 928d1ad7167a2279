"""Micro-batching: concurrent calls that would each run the same model pass are gathered into one batch.

The first call of a group leads it: it waits up to `window` seconds for the group to fill (`max_size` calls),
then for the model's lock, while later calls keep joining; then it runs the whole group as one call of
`run(items)` in its own thread and hands each caller its result. A model that is busy thus batches whatever
queued behind it, and an idle one waits at most the window. Once the lock is held, each call's `ready()` runs
first: it reports that the work began, and whatever it raises (a client gone, a time limit) fails that call
alone and takes its item out of the batch. If the batch raises, each item runs alone, so a bad item fails
only its own call. Threads only, no scheduler: every caller is a request's worker thread.
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Callable, Hashable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any

Lock = Callable[[Callable[[], None]], AbstractContextManager]  # lock(waiting): the model's, e.g. exclusive


@dataclass(frozen=True)
class Batched:
    value: Any
    size: int  # calls in the pass that computed it (1: ran alone)


@dataclass
class _Call:
    item: Any
    ready: Callable[[], None]
    outcome: tuple[bool, Any, int] | None = None  # (succeeded, result or exception, batch size)


@dataclass
class _Group:
    calls: list[_Call] = field(default_factory=list)
    full: threading.Event = field(default_factory=threading.Event)
    done: threading.Event = field(default_factory=threading.Event)


class Batcher:
    def __init__(self, window: float, max_size: int):
        self.window, self.max_size = window, max_size
        self._open: dict[Hashable, _Group] = {}
        self._lock = threading.Lock()

    def run(self, key: Hashable, item: Any, run: Callable[[list], list], lock: Lock,
            waiting: Callable[[], None] = lambda: None, ready: Callable[[], None] = lambda: None) -> Batched:
        """`run(items)` -> one result per item, for every call with this `key` gathered with this one;
        `lock(waiting)` is held while it runs (`waiting()` is called if this call has to wait for the model);
        `ready()` runs once the lock is held, before the pass (see the module's docstring)."""
        call = _Call(item, ready)
        with self._lock:
            group = self._open.get(key)
            leading = group is None
            if leading:
                group = self._open[key] = _Group()
            group.calls.append(call)
            if len(group.calls) >= self.max_size:
                group.full.set()
                del self._open[key]  # full: the next call starts a group of its own
        if leading:
            self._lead(key, group, run, lock, waiting)
        else:
            waiting()
            group.done.wait()
        succeeded, value, size = call.outcome
        if not succeeded:
            raise _own_copy(value)
        return Batched(value, size)

    def _lead(self, key: Hashable, group: _Group, run: Callable[[list], list], lock: Lock,
              waiting: Callable[[], None]) -> None:
        try:
            if self.max_size > 1 and self.window > 0:
                group.full.wait(self.window)
            with lock(waiting):
                _run_calls(run, self._close(key, group))
        except BaseException as error:  # the lock itself failed: every caller still waiting hears it
            for call in self._close(key, group):
                call.outcome = call.outcome or (False, error, 1)
        finally:
            group.done.set()

    def _close(self, key: Hashable, group: _Group) -> list[_Call]:
        """The group's calls, once no call can join it any more (later ones start the next group)."""
        with self._lock:
            if self._open.get(key) is group:
                del self._open[key]
            return list(group.calls)


def _run_calls(run: Callable[[list], list], calls: list[_Call]) -> None:
    going = []
    for call in calls:
        try:
            call.ready()
            going.append(call)
        except Exception as error:
            call.outcome = (False, error, 1)
    if not going:
        return
    try:
        results = run([call.item for call in going])
        if len(results) != len(going):
            raise RuntimeError(f"a batched pass gave {len(results)} results for {len(going)} items")
        for call, result in zip(going, results):
            call.outcome = (True, result, len(going))
        return
    except Exception as error:
        if len(going) == 1:
            going[0].outcome = (False, error, 1)
            return
    for call in going:  # one bad item (a target out of range) fails its own call only
        try:
            call.outcome = (True, run([call.item])[0], 1)
        except Exception as error:
            call.outcome = (False, error, 1)


def _own_copy(error: BaseException) -> BaseException:
    """An exception for one caller to raise: one object raised in several threads would collect all their
    tracebacks."""
    try:
        return copy.copy(error)
    except Exception:
        return error
