"""What a newcomer needs before the first upload: each model says what it was trained on (card, API,
demo cards), and a dataset offers sample images to start from, one per class."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from app.demo.recipes import RECIPES, TRAINED_ON, card_text
from app.settings import BUILTIN_MODEL_DIR
from app.store.cards import ModelCard, read_card
from tests.test_api import assert_error
from tests.test_images_api import client, root  # noqa: F401  (module-scoped fixtures: one atlas, one server)

README = Path(__file__).resolve().parents[1] / "README.md"


def test_a_card_may_say_what_its_model_was_trained_on(write_tiny_card):
    assert read_card(write_tiny_card()).trained_on == ""  # optional: older cards stay valid
    card = read_card(write_tiny_card(trained_on="CIFAR-10 training photos"))
    assert card.trained_on == "CIFAR-10 training photos"


def test_the_demo_cards_say_they_know_only_shapes():
    """The committed cards, and the cards `fovea demo train` writes, both carry the demo's training data."""
    for recipe in RECIPES.values():
        committed = read_card(BUILTIN_MODEL_DIR / f"{recipe.id}.toml")
        assert "procedural shapes only" in committed.trained_on and "never seen a photo" in committed.trained_on
        assert committed.trained_on == TRAINED_ON
        written = ModelCard.model_validate(tomllib.loads(card_text(recipe, "w.safetensors", "0" * 64, 0.99, 1.0, 0)))
        assert written.trained_on == TRAINED_ON


def test_the_api_and_the_readme_name_the_training_data(client):  # noqa: F811
    listed = {model["id"]: model for model in client.get("/api/models").json()}
    assert listed["shapes-cnn"]["trained_on"] == TRAINED_ON
    assert client.get("/api/models/shapes-mobilenet").json()["trained_on"] == TRAINED_ON
    schema = client.get("/openapi.json").json()["components"]["schemas"]["ModelSummary"]
    assert "trained_on" in schema["required"] and schema["properties"]["trained_on"]["description"]
    assert re.search(r"^trained_on = \".+\" +# optional", README.read_text(), re.MULTILINE)  # the card reference


def test_samples_are_the_first_image_of_each_class(client, root):  # noqa: F811
    body = client.get("/api/datasets/demo/samples").json()
    atlas = client.app.state.atlases.for_dataset("demo")
    labels = [atlas.image(i)["label"] for i in range(atlas.meta["images"])]
    first = {}
    for index, label in enumerate(labels):
        first.setdefault(label, index)
    assert body["dataset"] == "demo" and body["models"] == ["shapes-cnn"]  # the models that know its images
    assert [(row["label"], row["index"]) for row in body["images"]] == sorted(first.items())
    for row in body["images"]:
        assert row["id"] == f"demo:{row['index']}" and row["page"] == f"/image/demo:{row['index']}"
        assert client.get(row["url"]).headers["content-type"] == "image/png"
        assert client.get(f"/api/images/{row['id']}").json()["label"] == row["label"]
    assert len(client.get("/api/datasets/demo/samples", params={"limit": 2}).json()["images"]) == 2


def test_samples_of_an_unknown_dataset_or_a_bad_limit_are_refused(client):  # noqa: F811
    assert_error(client.get("/api/datasets/imagenet/samples"), 404, "not_found", "imagenet")
    assert_error(client.get("/api/datasets/demo/samples", params={"limit": 0}), 422, "invalid_input")
    assert_error(client.get("/api/datasets/demo/samples", params={"limit": 101}), 422, "invalid_input")
