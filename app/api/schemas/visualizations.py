"""Answers of the per-unit annotation routes and the feature visualisations."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field


class AnnotationKindInfo(BaseModel):
    name: str
    version: int
    description: str
    media_type: str = Field(description="Of each stored value.")
    scope: Literal["weights", "atlas"] = Field(description="What it depends on: the model's weights alone, or an "
                                                           "atlas too.")


class AnnotationKindList(BaseModel):
    kinds: list[AnnotationKindInfo]


class RenderedUnit(BaseModel):
    """A unit and the settings its feature visualisations were rendered with."""

    model: str
    layer: str
    kind: str = Field(description="`channel`, or the dictionary whose feature it is (rendered along the direction "
                                  "that drives the feature).")
    unit: int
    steps: int
    size: int = Field(description="Side of the square image in pixels.")
    seed: int
    param: str = Field(description="Parameterisation: `fft` (Lucid's decorrelated Fourier image) or `maco` "
                                   "(phases only, the magnitude spectrum of the model's images).")
    precision: str = Field(description="Of the model's pass while rendering: `float32`, or `bfloat16` on a device "
                                       "that computes it natively (the visualization_precision setting).")


class Visualization(RenderedUnit):
    """A unit's feature visualisation (activation maximisation), as stored for its settings."""

    variant: str = Field(description="The settings' name, as `fovea visualize` stores them.")
    colors: str = Field(description="Where the colour space (and MACO's magnitudes) came from: the model's atlas "
                                    "images, or Lucid's ImageNet constants without an atlas.")
    negative: bool = Field(description="The image that drives the unit lowest instead of highest.")
    activation: float = Field(description="The unit's spatial mean on the image, untransformed.")
    dataset_best: float | None = Field(description="The largest spatial mean of any image of the model's default "
                                                   "atlas (none without an atlas of the layer).")
    png: str = Field(description="The image's address.")


class FacetMember(BaseModel):
    rank: int = Field(description="Among the unit's top images (0 is its top image).")
    image: str = Field(description="The image's id, `dataset:index`, as the image page takes it.")
    value: float = Field(description="The unit's peak activation on the image.")


class VisualizationFacet(BaseModel):
    index: int
    members: list[FacetMember]
    activation: float = Field(description="The unit's spatial mean on the facet's image, untransformed.")
    png: str = Field(description="The image's address.")


class VisualizationFacets(RenderedUnit):
    """A unit's facets (Nguyen et al. 2016): its top images clustered by the layer's activations on them, each
    facet rendered from the mean of its images."""

    dataset: str = Field(description="The atlas whose top images were clustered.")
    asked: int = Field(description="The facets asked for; fewer come when the top images have fewer patterns.")
    facets: list[VisualizationFacet]
