"""The principal-component CAMs: the projection of each position's channel vector onto the first principal
component of all positions.

A principal component has no sign of its own (v and -v are both first singular vectors). Fovea orients it
so that the map correlates positively with the channel sum of the decomposed values (for EigenCAM the
summed activations, for EigenGradCAM the HiResCAM map): the map then points the way the layer's total
response does. pytorch-grad-cam keeps whatever sign numpy's SVD returns, so its maps can come out
inverted; the agreement test compares with the sign aligned.
"""

from __future__ import annotations

import torch

from app.engine.cam.base import CamMethod, Evidence, Rerun


def principal_projection(values: torch.Tensor) -> torch.Tensor:
    """(c, h, w) -> (h, w): the positions (rows of the (h*w, c) matrix M, each channel centred over the
    positions) projected onto M's first right singular vector v1, oriented to correlate positively with
    values.sum(0).

    M v1 = s1 u1 is found from the eigendecomposition of the smaller Gram matrix (M M^T or M^T M, in
    float64 on the CPU, which MPS lacks): a 7x7 map of 2,048 channels needs a 49x49 problem, not an SVD of
    49x2,048."""
    c, h, w = values.shape
    rows = values.reshape(c, h * w).T.cpu().double()
    centred = rows - rows.mean(dim=0, keepdim=True)
    if h * w <= c:
        eigenvalues, eigenvectors = torch.linalg.eigh(centred @ centred.T)
        projection = eigenvectors[:, -1] * eigenvalues[-1].clamp(min=0).sqrt()
    else:
        projection = centred @ torch.linalg.eigh(centred.T @ centred)[1][:, -1]
    if torch.dot(projection, rows.sum(dim=1)) < 0:  # the projection is centred: this is the correlation's sign
        projection = -projection
    return projection.reshape(h, w).to(values.device, values.dtype)


class EigenCAM(CamMethod):
    """L = (A~ v1) reshaped to (h, w), where A~ is the (h*w, c) activation matrix with each channel centred
    and v1 its first right singular vector (Muhammad & Yeasin 2020, eq. 3-4); class-agnostic, no gradients."""

    id = "eigencam"
    name = "EigenCAM"
    description = "First principal component of the activations (class-agnostic, no gradients)."
    reference = "Muhammad & Yeasin, Eigen-CAM, IJCNN 2020, https://arxiv.org/abs/2008.00299"

    def compute(self, evidence: Evidence, rerun: Rerun) -> torch.Tensor:
        return principal_projection(evidence.activations)


class EigenGradCAM(CamMethod):
    """EigenCAM of G * A (position by position) instead of A: the first principal component of the HiResCAM
    terms, so it follows the target class (pytorch-grad-cam's variant of Eigen-CAM)."""

    id = "eigengradcam"
    name = "EigenGradCAM"
    description = "First principal component of activations times gradients."
    reference = ("Muhammad & Yeasin, Eigen-CAM, IJCNN 2020, https://arxiv.org/abs/2008.00299, applied to "
                 "gradient x activation as in pytorch-grad-cam")
    needs_gradients = True

    def compute(self, evidence: Evidence, rerun: Rerun) -> torch.Tensor:
        return principal_projection(evidence.gradients * evidence.activations)
