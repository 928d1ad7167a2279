"""Score-CAM: each channel weighted by how strongly the model still predicts the target when it sees only
the part of the image that channel highlights.

What need not be computed is not: an all-zero channel (a dead ReLU) contributes nothing whatever its
weight and gets no pass; masks are built at the layer's resolution, where identical masks are found
exactly (a constant channel gives the empty mask; channels with their only nonzero value at the same
position give the same one-hot mask) and each distinct mask is run once. Masked batches are written into
one buffer in the input's memory format (channels-last on the CPU), so the model never converts layouts.
"""

from __future__ import annotations

import torch

from app.engine.cam.base import PER_CHANNEL, CamMethod, Evidence, Rerun, upsample, weighted_sum


def channel_masks(activations: torch.Tensor) -> torch.Tensor:
    """(c, h, w) -> (c, h, w): each channel min-max scaled to [0, 1]; a constant channel gives zeros."""
    c = activations.shape[0]
    flat = activations.reshape(c, -1)
    low, high = flat.amin(dim=1, keepdim=True), flat.amax(dim=1, keepdim=True)
    span = high - low
    scaled = (flat - low) / torch.where(span > 0, span, torch.ones_like(span))
    return torch.where(span > 0, scaled, torch.zeros_like(scaled)).reshape(activations.shape)


class ScoreCAM(CamMethod):
    """L = sum_k w_k A_k with w_k = softmax(f(X * M_k))_target, M_k = up(norm(A_k)): the target's softmax
    probability on the input masked by channel k's min-max-scaled, bilinearly upsampled map (Wang et al.
    2020, eq. 5-8 and their reference implementation, which scores the probability and does not subtract a
    baseline).

    Deliberate differences from pytorch-grad-cam: it weights channels by a softmax *over channels* of the
    target's raw logits (override `channel_weights` to get that variant), and it scales masks after
    upsampling with align_corners=True; Fovea scales at the layer's resolution (which finds identical masks
    exactly) and upsamples like cv2.resize.
    """

    id = "scorecam"
    name = "Score-CAM"
    description = "Channels weighted by the target's probability on the image masked by each channel."
    reference = "Wang et al., Score-CAM, CVPR workshops 2020, https://arxiv.org/abs/1910.01279"
    extra_forwards = PER_CHANNEL
    counts = "masked images"

    def channel_weights(self, logits: torch.Tensor, target: int) -> torch.Tensor:
        """(c, classes) logits of the c masked inputs -> (c,) channel weights."""
        return logits.softmax(dim=1)[:, target]

    def compute(self, evidence: Evidence, rerun: Rerun) -> torch.Tensor:
        activations = evidence.activations
        c, h, w = activations.shape
        # An all-zero channel adds w_k * 0 to the map, whatever its weight: it needs no pass at all.
        live = activations.reshape(c, -1).ne(0).any(dim=1)
        weights = torch.zeros(c, dtype=torch.float32, device=activations.device)
        if live.any():
            masks = channel_masks(activations[live]).reshape(-1, h * w)
            distinct, inverse = torch.unique(masks, dim=0, return_inverse=True)
            logits = masked_logits(evidence.image, distinct.reshape(-1, h, w), rerun)
            weights[live] = self.channel_weights(logits[inverse], evidence.target).float()
        return weighted_sum(weights, activations)


def masked_logits(image: torch.Tensor, masks: torch.Tensor, rerun: Rerun) -> torch.Tensor:
    """Logits (m, classes) of `image` (1, c_in, H, W) times each of `masks` (m, h, w), upsampled to (H, W),
    in batches of `rerun.score_batch_size`."""
    size = tuple(image.shape[2:])
    batch_size = min(rerun.score_batch_size, len(masks))
    buffer = torch.empty((batch_size, *image.shape[1:]), dtype=image.dtype, device=image.device,
                         memory_format=rerun.memory_format)
    logits = []
    for start in range(0, len(masks), batch_size):
        rerun.progress(start, len(masks))
        upsampled = upsample(masks[start:start + batch_size], size).to(image.dtype)
        batch = buffer[:len(upsampled)]
        torch.mul(image, upsampled[:, None], out=batch)
        logits.append(rerun.from_input(batch).float())
    rerun.progress(len(masks), len(masks))
    return torch.cat(logits)
