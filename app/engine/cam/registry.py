"""The one registry of CAM methods: the API, the front end's method list, the docs and the parametrised
tests all read it. Order is presentation order: gradient methods, principal components, perturbation
methods, input-resolution maps."""

from __future__ import annotations

from app.engine.cam.ablation import AblationCAM
from app.engine.cam.base import CamMethod
from app.engine.cam.eigen import EigenCAM, EigenGradCAM
from app.engine.cam.gradient import GradCAM, GradCAMPlusPlus, HiResCAM, LayerCAM, XGradCAM
from app.engine.cam.pixels import GuidedGradCAM, Saliency
from app.engine.cam.score import ScoreCAM

METHODS: dict[str, CamMethod] = {method.id: method for method in (
    GradCAM(), GradCAMPlusPlus(), XGradCAM(), HiResCAM(), LayerCAM(), EigenCAM(), EigenGradCAM(), ScoreCAM(),
    AblationCAM(), Saliency(), GuidedGradCAM(),
)}
# What the image page opens with: three maps from one forward and one backward pass, cheap on any model and
# different enough to compare.
DEFAULT_METHODS = ("gradcam", "gradcampp", "layercam")
