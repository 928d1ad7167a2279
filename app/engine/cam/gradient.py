"""The gradient-weighted CAMs: each reads the layer's activations A (c, h, w) and the gradients
G = d y_target / d A of the one shared backward pass, and returns a raw signed (h, w) map.
Sums over i, j run over the layer's h x w positions; sums over k over its c channels.
"""

from __future__ import annotations

import torch

from app.engine.cam.base import CamMethod, Evidence, Rerun, weighted_sum


class GradCAM(CamMethod):
    """L = sum_k w_k A_k with w_k = mean_ij G_k,ij (Selvaraju et al. 2017, eq. 1-2, without the ReLU)."""

    id = "gradcam"
    name = "Grad-CAM"
    description = "Channels weighted by their spatially averaged gradient."
    reference = "Selvaraju et al., Grad-CAM, ICCV 2017, https://arxiv.org/abs/1610.02391"
    needs_gradients = True

    def compute(self, evidence: Evidence, rerun: Rerun) -> torch.Tensor:
        return weighted_sum(evidence.gradients.mean(dim=(1, 2)), evidence.activations)


class GradCAMPlusPlus(CamMethod):
    """L = sum_k w_k A_k with w_k = sum_ij alpha_k,ij relu(G_k,ij) and
    alpha_k,ij = G^2 / (2 G^2 + (sum_ab A_k,ab) G^3), the closed form of Chattopadhay et al. 2018 (eq. 19)
    for an exponential output; alpha is 0 where G is 0 (and 1e-6 keeps the denominator off zero)."""

    id = "gradcampp"
    name = "Grad-CAM++"
    description = "Channels weighted by positive gradients, each position weighted by a higher-order term."
    reference = "Chattopadhay et al., Grad-CAM++, WACV 2018, https://arxiv.org/abs/1710.11063"
    needs_gradients = True

    def compute(self, evidence: Evidence, rerun: Rerun) -> torch.Tensor:
        gradients, activations = evidence.gradients, evidence.activations
        squared = gradients.square()
        totals = activations.sum(dim=(1, 2), keepdim=True)
        alpha = squared / (2 * squared + totals * squared * gradients + 1e-6)
        alpha = torch.where(gradients != 0, alpha, torch.zeros_like(alpha))
        return weighted_sum((alpha * gradients.clamp(min=0)).sum(dim=(1, 2)), activations)


class XGradCAM(CamMethod):
    """L = sum_k w_k A_k with w_k = sum_ij (A_k,ij / sum_ab A_k,ab) G_k,ij (Fu et al. 2020, eq. 11);
    1e-7 keeps the denominator off zero."""

    id = "xgradcam"
    name = "XGrad-CAM"
    description = "Channels weighted by their gradient averaged with the activation as weights."
    reference = "Fu et al., Axiom-based Grad-CAM, BMVC 2020, https://arxiv.org/abs/2008.02312"
    needs_gradients = True

    def compute(self, evidence: Evidence, rerun: Rerun) -> torch.Tensor:
        gradients, activations = evidence.gradients, evidence.activations
        weights = (gradients * activations).sum(dim=(1, 2)) / (activations.sum(dim=(1, 2)) + 1e-7)
        return weighted_sum(weights, activations)


class HiResCAM(CamMethod):
    """L_ij = sum_k G_k,ij A_k,ij: the gradient is not averaged, so the map is exactly each position's share
    of the score when the layers after it are linear (Draelos & Carin 2020, eq. 4)."""

    id = "hirescam"
    name = "HiResCAM"
    description = "Activations times gradients, position by position, summed over channels."
    reference = "Draelos & Carin, HiResCAM, 2020, https://arxiv.org/abs/2011.08891"
    needs_gradients = True

    def compute(self, evidence: Evidence, rerun: Rerun) -> torch.Tensor:
        return (evidence.gradients * evidence.activations).sum(dim=0)


class LayerCAM(CamMethod):
    """L_ij = sum_k relu(G_k,ij) A_k,ij (Jiang et al. 2021, eq. 5-6, without the final ReLU)."""

    id = "layercam"
    name = "LayerCAM"
    description = "Activations times positive gradients, position by position, summed over channels."
    reference = "Jiang et al., LayerCAM, IEEE TIP 2021, https://doi.org/10.1109/TIP.2021.3089943"
    needs_gradients = True

    def compute(self, evidence: Evidence, rerun: Rerun) -> torch.Tensor:
        return (evidence.gradients.clamp(min=0) * evidence.activations).sum(dim=0)
