"""The engine's slower paths say so. Where Ablation-CAM cannot run only the layers after the target layer,
it re-runs the whole model for every batch of ablated channels; where the batch norms cannot be folded,
Score-CAM and the curves run the model as it is. Either can make a request many times slower, so each is
logged once per model and path, with the reason, rather than taken silently."""

from __future__ import annotations

import logging
import threading
import weakref

from torch import nn

log = logging.getLogger(__name__)

WHOLE_MODEL_ABLATION = "Ablation-CAM re-runs the whole model for each batch of ablated channels"
UNFOLDED = "Score-CAM and the deletion and insertion curves run the model without folded batch norms"

_TOLD: weakref.WeakKeyDictionary[nn.Module, set[str]] = weakref.WeakKeyDictionary()
_LOCK = threading.Lock()


def fall_back(model: nn.Module, path: str, reason: str, level: int = logging.WARNING) -> None:
    """Log, the first time only for this model and `path`, that the engine takes `path` and why."""
    with _LOCK:
        told = _TOLD.setdefault(model, set())
        if path in told:
            return
        told.add(path)
    log.log(level, "%s (%s): %s; said once per model", path, type(model).__name__, reason)
