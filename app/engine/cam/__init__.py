"""Class activation maps for any layer, any target class and any set of methods in one call.

    from app.engine.cam import METHODS, compute_cams, postprocess
    result = compute_cams(module, image, "layer4", ["gradcam", "scorecam"], target=None)
    heatmap = postprocess(result.maps["gradcam"].raw, size=result.input_size)

Stages, each a small pure piece: capture (capture.py: one forward, one backward, scoped hooks) ->
methods (gradient.py, eigen.py, score.py, ablation.py, pixels.py; listed in registry.py) -> postprocess.
The formulas and their references are in docs/cam-methods.md. How good a map is (deletion, insertion,
average drop, pointing games): metrics.py.
"""

from app.engine.cam.base import CamMethod, Evidence, Rerun
from app.engine.cam.engine import CamMap, CamResult, compute_cams, compute_cams_batch
from app.engine.cam.postprocess import postprocess
from app.engine.cam.registry import METHODS

__all__ = ["METHODS", "CamMap", "CamMethod", "CamResult", "Evidence", "Rerun", "compute_cams", "compute_cams_batch",
           "postprocess"]
