"""Card validation: every problem names the file and the field."""

from __future__ import annotations

import pytest

from app.errors import ModelCardError
from app.store.cards import read_card


def test_valid_card_parses(write_tiny_card):
    card = read_card(write_tiny_card())
    assert card.id == "tiny"
    assert card.input.size == (16, 16)
    assert card.architecture.callable == "tinynet:tiny_net"


@pytest.mark.parametrize(
    ("overrides", "field", "words"),
    [
        ({"id": "Not URL safe!"}, "id", "pattern"),
        ({"weights": {"sha256": "abc"}}, "weights.sha256", "64 hexadecimal"),
        ({"weights": {"torchvision": "IMAGENET1K_V1"}}, "weights", "exactly one of 'file'"),
        ({"architecture": {"torchvision": "resnet18"}}, "architecture", "exactly one of 'torchvision'"),
        ({"architecture": {"callable": "no_colon_here"}}, "architecture", "package.module:function"),
        ({"input": {"size": [16, 16], "mean": [0.5, 0.5], "std": [1, 1, 1]}}, "input.mean",
         "needs 3 values, one per colour channel (red, green, blue); got 2"),
        ({"input": {"std": [0.2, 0.2, 0.2, 0.2]}}, "input.std", "needs 3 values"),
        ({"input": {"size": [16, 16, 3]}}, "input.size", "needs [height, width], or one number for a square; got 3"),
        ({"input": {"std": [0.0, 1.0, 1.0]}}, "input.std", "positive"),
        ({"input": {"size": [4, 4]}}, "input.size", "at least 8"),
        ({"name": None}, "name", "Field required"),
        ({"colour": "blue"}, "colour", "unknown field"),
        ({"labels": {"names": ["a"], "file": "labels.txt"}}, "labels", "only one of"),
        ({"labels": {"names": ["a"], "torchvision": "ResNet50_Weights.IMAGENET1K_V2"}}, "labels", "only one of"),
        ({"labels": {"torchvision": "resnet50"}}, "labels.torchvision", "pattern"),
        ({"weights": {"package": "not a package!"}}, "weights.package", "pattern"),
        ({"weights": {"file": None, "sha256": None, "torchvision": "X", "package": "p"}}, "weights",
         "'package' goes with 'file'"),
        ({"weights": {"install": "pip install p"}}, "weights", "'install' goes with 'package'"),
    ],
)
def test_validation_errors_name_file_and_field(write_tiny_card, overrides, field, words):
    path = write_tiny_card(**overrides)
    with pytest.raises(ModelCardError) as caught:
        read_card(path)
    message = caught.value.message
    assert message.startswith(f"{path}: ")
    named = [f for f in caught.value.detail["fields"] if f == field or f.startswith(f"{field}.")]
    assert named, caught.value.detail["fields"]
    assert f"{named[0]}: " in message
    assert words in message


def test_missing_input_needs_torchvision_weights(write_tiny_card):
    path = write_tiny_card(input=None)
    with pytest.raises(ModelCardError, match=r"input.size, input.mean, input.std must be set"):
        read_card(path)


def test_toml_syntax_error_names_file(card_dir):
    path = card_dir / "broken.toml"
    path.write_text('id = "broken"\nname = \n')
    with pytest.raises(ModelCardError, match=rf"^{path}: not valid TOML: .*line 2"):
        read_card(path)
