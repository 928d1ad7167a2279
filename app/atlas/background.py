"""Build atlases in a background thread, one at a time, so a fresh server shows unit pages without any
other command. Progress goes to the log and to `status()`, which the API reports as "building"."""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

from app.atlas.datasets import ImageDataset
from app.atlas.recording import BuildCancelled

log = logging.getLogger(__name__)


@dataclass
class BuildStatus:
    model: str
    dataset: str
    state: str = "queued"  # queued, building, done, failed
    step: str = "images"  # while building: the pass over the images, then labelling its units
    done: int = 0  # of the step, in images
    total: int = 0
    error: str | None = None


class BackgroundIndexer:
    def __init__(self, build: Callable[..., object]):
        """`build(model_id, dataset, progress=..., cancel=...)` runs one index build."""
        self._build = build
        self._queue: queue.Queue[tuple[str, Callable[[], ImageDataset]] | None] = queue.Queue()
        self._status: dict[str, BuildStatus] = {}
        self._cancel = threading.Event()
        self._thread = threading.Thread(target=self._run, name="fovea-indexer", daemon=True)
        self._thread.start()

    def enqueue(self, model_id: str, dataset_name: str, dataset: Callable[[], ImageDataset]) -> None:
        self._status[model_id] = BuildStatus(model_id, dataset_name)
        self._queue.put((model_id, dataset))

    def status(self, model_id: str) -> BuildStatus | None:
        return self._status.get(model_id)

    def stop(self, timeout: float = 30.0) -> None:
        """Stop after the current batch; an interrupted build resumes from its checkpoint next time."""
        self._cancel.set()
        self._queue.put(None)
        self._thread.join(timeout)

    def _run(self) -> None:
        while (item := self._queue.get()) is not None:
            model_id, dataset = item
            status = self._status[model_id]
            status.state = "building"
            last_log = 0.0

            def progress(done: int, total: int, status=status, step: str = "images") -> None:
                nonlocal last_log
                status.step, status.done, status.total = step, done, total
                if time.monotonic() - last_log > 5 or done == total:
                    last_log = time.monotonic()
                    log.info("%s %s on %s: %d of %d images", "indexing" if step == "images" else "labelling units of",
                             status.model, status.dataset, done, total)

            try:
                self._build(model_id, dataset(), progress=progress, cancel=self._cancel,
                            dissect_progress=partial(progress, step="labels"))
                status.state = "done"
                log.info("atlas of %s on %s is ready", status.model, status.dataset)
            except BuildCancelled:
                status.state = "queued"
                return
            except Exception as exc:  # reported in the API; the server keeps serving
                status.state, status.error = "failed", f"{type(exc).__name__}: {exc}"
                log.exception("indexing %s failed", model_id)
