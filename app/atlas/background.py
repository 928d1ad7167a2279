"""Build atlases in a background thread, one at a time, so a fresh server shows unit pages without any
other command. Progress goes to the log and to `status()`, which the API reports as "building". Background
jobs give way to the model work pages wait for (`Foreground`)."""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial

from app.atlas.datasets import ImageDataset
from app.atlas.recording import BuildCancelled

log = logging.getLogger(__name__)


QUIET_SECONDS = 0.25  # a page's requests come one after another: a gap this short is not the page's end


class Foreground:
    """The model work that pages wait for (the server counts its requests in flight). The first-start jobs
    pause between their steps while there is any, and until it has been quiet for QUIET_SECONDS: on two cores
    a background render beside it took a page's render from 1.5 s to 3-9 s. (Lowering the jobs' priority
    instead made it 17-49 s: a job thread holds the server's GIL, and at low priority it holds it longer.)"""

    def __init__(self):
        self._busy, self._since = 0, 0.0
        self._changed = threading.Condition()

    @contextmanager
    def working(self) -> Iterator[None]:
        with self._changed:
            self._busy += 1
        try:
            yield
        finally:
            with self._changed:
                self._busy -= 1
                self._since = time.monotonic()
                self._changed.notify_all()

    def wait_until_quiet(self, cancel: threading.Event | None = None) -> None:
        """Return once no page has waited for model work for QUIET_SECONDS, or `cancel` is set."""
        with self._changed:
            while not (cancel is not None and cancel.is_set()):
                quiet = time.monotonic() - self._since
                if not self._busy and quiet >= QUIET_SECONDS:
                    return
                # Woken by the last request's end; a timeout still looks at `cancel` now and then.
                self._changed.wait(QUIET_SECONDS - quiet if not self._busy else 1.0)


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
    def __init__(self, build: Callable[..., object], foreground: Foreground | None = None):
        """`build(model_id, dataset, progress=..., cancel=...)` runs one index build; between its batches it
        waits while `foreground` is busy."""
        self._build, self._foreground = build, foreground
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
                if self._foreground is not None:
                    self._foreground.wait_until_quiet(self._cancel)
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
