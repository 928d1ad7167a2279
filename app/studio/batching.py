"""Micro-batching: concurrent calls that would each run the same model pass are gathered into one batch.

The first call of a group leads it: it waits up to `window` seconds for the group to fill (`max_size` calls),
then for the model's lock, while later calls keep joining; then it runs the whole group as one call of
`run(items)` in its own thread and hands each caller its result. A model that is busy thus batches whatever
queued behind it, and an idle one waits at most the window. If the batch raises, each item runs alone, so a
bad item fails only its own call. Threads only, no scheduler: every caller is a request's worker thread.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any

Lock = Callable[[Callable[[], None]], AbstractContextManager]  # lock(waiting): the model's, e.g. exclusive


@dataclass(frozen=True)
class Batched:
    value: Any
    size: int  # calls in the batch that computed it (1: ran alone)


@dataclass
class _Group:
    items: list = field(default_factory=list)
    full: threading.Event = field(default_factory=threading.Event)
    done: threading.Event = field(default_factory=threading.Event)
    outcomes: list = field(default_factory=list)  # per item: (True, result) or (False, exception)


class Batcher:
    def __init__(self, window: float, max_size: int):
        self.window, self.max_size = window, max_size
        self._open: dict[Hashable, _Group] = {}
        self._lock = threading.Lock()

    def run(self, key: Hashable, item: Any, run: Callable[[list], list], lock: Lock,
            waiting: Callable[[], None] = lambda: None) -> Batched:
        """`run(items)` -> one result per item, for every call with this `key` gathered with this one;
        `lock(waiting)` is held while it runs (`waiting()` is called if the call has to wait for it)."""
        with self._lock:
            group = self._open.get(key)
            leading = group is None
            if leading:
                group = self._open[key] = _Group()
            index = len(group.items)
            group.items.append(item)
            if len(group.items) >= self.max_size:
                group.full.set()
                del self._open[key]  # full: the next call starts a group of its own
        if leading:
            self._lead(key, group, run, lock, waiting)
        else:
            waiting()
            group.done.wait()
        succeeded, value = group.outcomes[index]
        if not succeeded:
            raise value
        return Batched(value, len(group.outcomes))

    def _lead(self, key: Hashable, group: _Group, run: Callable[[list], list], lock: Lock,
              waiting: Callable[[], None]) -> None:
        try:
            if self.max_size > 1 and self.window > 0:
                group.full.wait(self.window)
            with lock(waiting):
                group.outcomes = _outcomes(run, self._close(key, group))
        except BaseException as error:  # the lock itself failed: every caller hears it
            group.outcomes = [(False, error)] * len(self._close(key, group))
        finally:
            group.done.set()

    def _close(self, key: Hashable, group: _Group) -> list:
        """The group's items, once no call can join it any more (later ones start the next group)."""
        with self._lock:
            if self._open.get(key) is group:
                del self._open[key]
            return list(group.items)


def _outcomes(run: Callable[[list], list], items: list) -> list[tuple[bool, Any]]:
    try:
        results = run(items)
        return [(True, result) for result in results]
    except Exception as error:
        if len(items) == 1:
            return [(False, error)]
    outcomes = []
    for item in items:  # one bad item (a target out of range) fails its own call only
        try:
            outcomes.append((True, run([item])[0]))
        except Exception as error:
            outcomes.append((False, error))
    return outcomes
