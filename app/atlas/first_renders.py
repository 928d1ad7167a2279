"""At server start, render the feature visualisations of the bundled demo models' default layers in the
background, once each model's demo atlas exists (its images give the colours), with the settings a page asks
for by default: a unit page, the layer grid's visualisations and the image page's fired units then open on
stored images. A unit a page asks for first is rendered on request and skipped here; a server stopped
part-way resumes at the next start from the units already stored."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass

from app.atlas.background import Foreground
from app.atlas.indexer import DEMO_DATASET
from app.atlas.registry import AtlasRegistry
from app.atlas.visualize import page_render_settings, visualize_layer
from app.settings import BUILTIN_MODEL_DIR, Settings
from app.store.store import ModelStore

log = logging.getLogger(__name__)
BATCH = 8  # units per optimisation: the model's lock is held a few seconds at most, so pages wait little
WAIT_SECONDS = 2.0  # between looks for an atlas still being built


@dataclass
class RenderStatus:
    model: str
    layer: str = ""
    done: int = 0
    total: int = 0
    state: str = "waiting"  # waiting (for the atlas), rendering, done, failed


class BackgroundRenderer:
    def __init__(self, store: ModelStore, atlases: AtlasRegistry, settings: Settings, models: list[str],
                 foreground: Foreground | None = None):
        """Before each optimisation step it waits while `foreground` is busy."""
        self._store, self._atlases, self._settings, self._foreground = store, atlases, settings, foreground
        self.status = {model: RenderStatus(model) for model in models}
        self._cancel = threading.Event()
        self._thread = threading.Thread(target=self._run, name="fovea-renderer", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Stop after the current batch (nothing of it is stored)."""
        self._cancel.set()
        self._thread.join(timeout)

    def _run(self) -> None:
        for model_id, status in self.status.items():
            while DEMO_DATASET not in self._atlases.datasets(model_id):
                if self._cancel.wait(WAIT_SECONDS):
                    return
            try:
                self._render(model_id, status)
            except Exception as exc:  # logged and reported; the server keeps serving
                status.state = "failed"
                log.exception("rendering %s's feature visualisations failed: %s", model_id, exc)
            if self._cancel.is_set():
                return

    def _give_way(self) -> None:
        if self._foreground is not None:
            self._foreground.wait_until_quiet(self._cancel)

    def _render(self, model_id: str, status: RenderStatus) -> None:
        model = self._store.ready(model_id)
        settings = page_render_settings(self._settings, self._atlases, model)
        status.state = "rendering"
        for info in (info for info in model.layers if info.default):
            status.layer = info.name

            def progress(done: int, total: int, layer: str = info.name) -> None:
                status.done, status.total = done, total
                if done == total:
                    log.info("feature visualisations of %s %s: %d units", model_id, layer, total)

            visualize_layer(model, info.name, self._settings.data_dir, settings, batch_size=BATCH,
                            progress=progress, cancel=self._cancel, checkpoint=self._give_way)
            if self._cancel.is_set():
                return
        status.state = "done"


def start_first_run_rendering(store: ModelStore, atlases: AtlasRegistry, settings: Settings,
                              foreground: Foreground | None = None) -> BackgroundRenderer | None:
    if not settings.auto_visualize_demo:
        return None
    # Demo models whose demo atlas exists or is on its way; the others have nothing to take colours from.
    models = [model.id for model in store if model.ready and model.card_path.parent == BUILTIN_MODEL_DIR
              and (settings.auto_index_demo or DEMO_DATASET in atlases.datasets(model.id))]
    return BackgroundRenderer(store, atlases, settings, models, foreground) if models else None
