"""Facets of a unit (Nguyen, Yosinski & Clune, "Multifaceted Feature Visualization", 2016): its top images
clustered by what the whole layer does on them, so that a unit that answers several different things shows
each; a facet's visualisation starts from the mean of its images. Clustering is k-means on the layer's
activation vectors scaled to unit length (their pattern, not their strength), started deterministically by
farthest-point traversal from the top image, so the same images always give the same facets."""

from __future__ import annotations

import torch


def cluster(vectors: torch.Tensor, clusters: int, iterations: int = 50) -> torch.Tensor:
    """(n,) facet of each of the (n, d) vectors, in [0, clusters); facets are numbered by their first member
    (the top image's facet is 0). Fewer distinct vectors than `clusters` give fewer facets."""
    points = torch.nn.functional.normalize(vectors.to(torch.float64), dim=1)
    chosen = [0]
    distance = (points - points[0]).norm(dim=1)
    while len(chosen) < min(clusters, len(points)):
        farthest = int(distance.argmax())
        if distance[farthest] <= 1e-9:
            break  # every point is already a centre's twin
        chosen.append(farthest)
        distance = torch.minimum(distance, (points - points[farthest]).norm(dim=1))
    centres = points[chosen].clone()
    labels = torch.cdist(points, centres).argmin(dim=1)
    for _ in range(iterations):
        for index in range(len(centres)):
            members = points[labels == index]
            if len(members):
                centres[index] = members.mean(dim=0)
        updated = torch.cdist(points, centres).argmin(dim=1)
        if torch.equal(updated, labels):
            break
        labels = updated
    first_seen = {int(label): None for label in labels}  # in order of first member
    renumber = {old: new for new, old in enumerate(first_seen)}
    return torch.tensor([renumber[int(label)] for label in labels])
