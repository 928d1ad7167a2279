"""Answers about dictionaries (`fovea dictionary`): what one is and how well it does, and what composes a
feature. The routes build dicts (FastJSONResponse); tests/test_openapi_complete.py checks real answers."""

from __future__ import annotations

from pydantic import BaseModel, Field


class DictionaryFigures(BaseModel):
    variance_explained: float = Field(description="1 - |X - decode(encode(X))|^2 / |X - mean|^2 over the held-out "
                                                  "images' positions (every tenth image of the dataset).")
    dead_features: int = Field(description="Features active on no held-out position.")
    mean_active: float = Field(description="Features active per position (L0).")
    vectors: int = Field(description="Held-out positions measured.")


class DictionaryOut(BaseModel):
    layer: str
    kind: str = Field(description="Its kind of unit: the name its features' pages and API queries use.")
    channels: int
    method: str = Field(description="`sae` (TopK sparse autoencoder), `nmf` or `semi-nmf`.")
    size: int = Field(description="Features.")
    sparsity: int | None = Field(description="The SAE's active features per position (k); None for (semi-)NMF.")
    steps: int
    dataset: str = Field(description="The atlas dataset it learned on.")
    figures: DictionaryFigures
    seconds: float
    digest: str = Field(description="A checksum of its numbers; an atlas records the one it indexed.")
    created: str
    indexed: bool = Field(description="Whether the atlas asked for has its features.")
    page: str = Field(description="The grid of its features.")


class DictionaryList(BaseModel):
    model: str
    dataset: str | None = Field(description="The atlas `indexed` refers to; None when the model has none.")
    dictionaries: list[DictionaryOut]


class FeatureChannel(BaseModel):
    unit: int = Field(description="A channel of the layer.")
    weight: float = Field(description="Its weight in the feature's unit-length decoder direction.")
    page: str


class NearbyFeature(BaseModel):
    unit: int
    cosine: float = Field(description="Cosine of the two features' decoder directions.")
    page: str


class FeatureOut(BaseModel):
    dictionary: DictionaryOut
    composition: list[FeatureChannel] = Field(description="The channels with the largest weights (by magnitude) "
                                                          "in the feature's direction.")
    nearest: list[NearbyFeature] = Field(description="The features whose directions are closest.")
