"""Ablation-CAM: each channel weighted by the relative drop of the target's score when that channel of the
layer's output is set to zero.

Only the layers after the target layer run again (`Rerun.from_layer`, see tail.py): the layer's output
is ablated in batches and fed to the rest of the network; the layers before it ran once, in the shared
forward pass. A channel that is zero everywhere needs no pass at all: ablating it changes nothing.
"""

from __future__ import annotations

import torch

from app.engine.cam.base import PER_CHANNEL_AFTER_LAYER, CamMethod, Evidence, Rerun, weighted_sum


class AblationCAM(CamMethod):
    """L = sum_k w_k A_k with w_k = (y - y_k) / y, y the target's logit and y_k the logit with channel k of
    the layer's output set to 0 (Desai & Ramaswamy 2020, eq. 2-3). Where y is exactly 0 the map is
    sum_k (y - y_k) A_k (the ratio is undefined; dividing by 1 keeps the map's shape).

    Deliberate difference from pytorch-grad-cam: it sets the channel to 0 only when the layer's batch has
    minimum 0, else to (minimum - 1e7); Fovea always uses 0, as the paper does (override `ablated_value`
    for the library's rule). The two agree on ReLU outputs such as a torchvision ResNet's stages.
    """

    id = "ablationcam"
    name = "Ablation-CAM"
    description = "Channels weighted by the drop in the target's score when each is zeroed."
    reference = ("Desai & Ramaswamy, Ablation-CAM, WACV 2020, https://openaccess.thecvf.com/content_WACV_2020/"
                 "papers/Desai_Ablation-CAM_Visual_Explanations_for_Deep_Convolutional_Network_via_Gradient-free_"
                 "Localization_WACV_2020_paper.pdf")
    extra_forwards = PER_CHANNEL_AFTER_LAYER
    counts = "channels ablated"

    def ablated_value(self, activations: torch.Tensor) -> float:
        """What an ablated channel is set to."""
        return 0.0

    def compute(self, evidence: Evidence, rerun: Rerun) -> torch.Tensor:
        activations, target = evidence.activations, evidence.target
        value = self.ablated_value(activations)
        c = activations.shape[0]
        score = evidence.logits[target]
        scores = score.repeat(c)
        live = activations.reshape(c, -1).ne(value).any(dim=1).nonzero().flatten()  # others: ablation is a no-op
        for start in range(0, len(live), rerun.ablation_batch_size):
            rerun.progress(start, len(live))
            channels = live[start:start + rerun.ablation_batch_size]
            batch = rerun.layer_batch(activations, len(channels))
            batch[torch.arange(len(channels), device=batch.device), channels] = value
            scores[channels] = rerun.from_layer(batch)[:, target].float()
        rerun.progress(len(live), len(live))
        return weighted_sum((score - scores) / (score if score != 0 else 1.0), activations)
