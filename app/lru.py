"""A bounded, thread-safe cache of computed values: the least recently used go first once the values weigh
more than the capacity, and requests that miss the same key at the same time compute it once (the others
wait for that value instead of computing it again beside it)."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

V = TypeVar("V")


class LruCache(Generic[V]):
    def __init__(self, capacity: int, weigh: Callable[[V], int] = lambda value: 1):
        """`capacity`: the most the kept values may weigh together, each weighing `weigh(value)` (by default
        1: a number of entries). A value heavier than the capacity is returned and not kept."""
        self.capacity, self._weigh = capacity, weigh
        self._values: OrderedDict[Hashable, tuple[V, int]] = OrderedDict()
        self._weight = 0
        self._lock = threading.Lock()
        self._computing: dict[Hashable, threading.Lock] = {}  # one lock per key being computed

    def get(self, key: Hashable, compute: Callable[[], V]) -> V:
        """The value kept for `key`, or `compute()`'s, kept. An error from `compute` is raised and nothing is
        kept; a request that waited then computes the value itself."""
        with self._lock:
            if (found := self._hit(key)) is not None:
                return found[0]
            computing = self._computing.setdefault(key, threading.Lock())
        with computing:
            with self._lock:
                if (found := self._hit(key)) is not None:  # computed while this request waited
                    return found[0]
            try:
                value = compute()
                self._keep(key, value)
                return value
            finally:
                with self._lock:
                    if self._computing.get(key) is computing:
                        del self._computing[key]

    def __len__(self) -> int:
        with self._lock:
            return len(self._values)

    def _hit(self, key: Hashable) -> tuple[V, int] | None:
        found = self._values.get(key)
        if found is not None:
            self._values.move_to_end(key)
        return found

    def _keep(self, key: Hashable, value: V) -> None:
        weight = self._weigh(value)
        if weight > self.capacity:
            return
        with self._lock:
            if key in self._values:
                self._weight -= self._values.pop(key)[1]
            self._values[key] = (value, weight)
            self._weight += weight
            while self._weight > self.capacity:
                self._weight -= self._values.popitem(last=False)[1][1]
