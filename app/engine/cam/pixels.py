"""The input-resolution maps: gradients with respect to the input pixels, (H, W) like the image.

Both reduce the colour channels as Simonyan et al. do (the largest absolute value over channels), so they
are non-negative by definition; Guided Grad-CAM keeps its other factor's sign out by construction (the
Grad-CAM term it multiplies is rectified, as in the paper).
"""

from __future__ import annotations

import torch

from app.engine.cam.base import CamMethod, Evidence, Rerun, upsample
from app.engine.cam.gradient import GradCAM


class Saliency(CamMethod):
    """M_ij = max_c |d y_target / d x_c,ij| (Simonyan et al. 2014, sec. 3.1)."""

    id = "saliency"
    name = "Saliency"
    description = "Magnitude of the input gradient, largest over colour channels."
    reference = "Simonyan et al., Deep Inside Convolutional Networks, ICLR 2014 workshop, https://arxiv.org/abs/1312.6034"
    needs_input_gradient = True
    resolution = "input"

    def compute(self, evidence: Evidence, rerun: Rerun) -> torch.Tensor:
        return evidence.input_gradient.abs().amax(dim=0)


class GuidedGradCAM(CamMethod):
    """M_ij = max_c |B_c,ij| * up(relu(L_GradCAM))_ij, where B is guided backpropagation (every ReLU's
    backward passes only positive gradients, Springenberg et al. 2015) and up() the bilinear upsampling of
    the Grad-CAM map to the input size (Selvaraju et al. 2017, sec. 3.1)."""

    id = "guided-gradcam"
    name = "Guided Grad-CAM"
    description = "Guided backpropagation masked by the upsampled, rectified Grad-CAM."
    reference = "Selvaraju et al., Grad-CAM, ICCV 2017, https://arxiv.org/abs/1610.02391"
    needs_gradients = True
    needs_guided_gradient = True
    resolution = "input"

    def compute(self, evidence: Evidence, rerun: Rerun) -> torch.Tensor:
        cam = upsample(GradCAM().compute(evidence, rerun).clamp(min=0), evidence.input_size)
        return evidence.guided_gradient.abs().amax(dim=0) * cam
