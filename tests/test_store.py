"""Loading the store: ready models, broken cards listed with their errors, nothing stopping the others."""

from __future__ import annotations

import urllib.error

import pytest
import torch

from app.engine.hooks import hook_count
from app.errors import LayerNotFound, ModelNotFound, ModelUnavailable
from app.store.store import load_store


def test_ready_model(write_tiny_card, settings_for, card_dir):
    write_tiny_card()
    store = load_store(settings_for(card_dir))
    model = store.get("tiny")
    assert model.ready, model.error
    assert model.labels == ["red", "green", "blue"]
    assert model.device == torch.device("cpu")
    assert [info.name for info in model.layers if info.default] == ["features.1", "features"]  # convs by their ReLUs
    assert model.layer("features.2").shape == (8, 8, 8)
    assert model.weights_sha256 == model.card.weights.sha256
    # Served models are frozen and in eval mode, with no hook left from the dry run.
    assert not model.module.training
    assert not any(p.requires_grad for p in model.module.parameters())
    assert hook_count(model.module) == 0


def test_loading_threads_bound_the_loading_alone(write_tiny_card, settings_for, card_dir, monkeypatch):
    """The front and its model worker load their models at once, each on one thread; after it, the process has
    its threads back for the work it serves."""
    import app.store.store as store_module

    write_tiny_card()
    seen, load_model = [], store_module.load_model
    monkeypatch.setattr(store_module, "load_model",
                        lambda *args: seen.append(torch.get_num_threads()) or load_model(*args))
    before = torch.get_num_threads()
    assert load_store(settings_for(card_dir), loading_threads=1).get("tiny").ready
    assert seen == [1] and torch.get_num_threads() == before
    load_store(settings_for(card_dir))
    assert seen == [1, before]


def test_broken_cards_do_not_stop_the_others(write_tiny_card, settings_for, card_dir):
    write_tiny_card("good")
    write_tiny_card("bad-sum", weights={"sha256": "0" * 64})
    write_tiny_card("bad-arch", architecture={"callable": "tinynet:no_such_function"})
    write_tiny_card("bad-import", architecture={"callable": "not_a_module_anywhere:build"})
    write_tiny_card("bad-labels", labels={"names": ["only", "two"]})
    write_tiny_card("bad-layer", layers=["features.9"])
    write_tiny_card("no-file", weights={"file": "missing.safetensors", "sha256": None})
    (card_dir / "syntax.toml").write_text("id = \n")
    store = load_store(settings_for(card_dir))
    status = {model.id: (model.status, model.error) for model in store}
    assert status["good"] == ("ready", None)
    errors = {model_id: error for model_id, (state, error) in status.items() if state == "error"}
    assert set(errors) == {"bad-sum", "bad-arch", "bad-import", "bad-labels", "bad-layer", "no-file", "syntax"}
    assert "weights.sha256 mismatch" in errors["bad-sum"] and "0" * 64 in errors["bad-sum"]
    assert "has no attribute 'no_such_function'" in errors["bad-arch"]
    assert "cannot import 'not_a_module_anywhere'" in errors["bad-import"]
    assert "gives 2 class names but the model outputs 3 classes" in errors["bad-labels"]
    assert "layers: 'features.9' is not a module" in errors["bad-layer"]
    assert "missing.safetensors does not exist" in errors["no-file"]
    assert "syntax.toml: not valid TOML" in errors["syntax"]
    with pytest.raises(ModelUnavailable, match="bad-sum"):
        store.ready("bad-sum")


def test_duplicate_ids_are_reported(write_tiny_card, settings_for, card_dir, tmp_path):
    write_tiny_card("twin")
    (card_dir / "twin-copy.toml").write_text((card_dir / "twin.toml").read_text())
    store = load_store(settings_for(card_dir))
    errors = [model.error for model in store if not model.ready]
    assert len(errors) == 1 and "duplicate model id 'twin'" in errors[0]


def test_declared_layers_become_the_default_selection(write_tiny_card, settings_for, card_dir):
    write_tiny_card(layers=["features.1"])
    model = load_store(settings_for(card_dir)).get("tiny")
    assert [info.name for info in model.layers if info.default] == ["features.1"]


def test_unknown_model_and_layer_are_named(write_tiny_card, settings_for, card_dir):
    write_tiny_card()
    store = load_store(settings_for(card_dir))
    with pytest.raises(ModelNotFound, match="no model 'nope'; known models: tiny"):
        store.get("nope")
    with pytest.raises(LayerNotFound, match="no explorable layer 'features.22'; did you mean features.2"):
        store.get("tiny").layer("features.22")


def test_a_command_on_one_model_loads_that_model_alone(write_tiny_card, settings_for, card_dir, monkeypatch):
    import app.store.store as store_module

    write_tiny_card("tiny")
    write_tiny_card("other")
    write_tiny_card("broken", weights={"sha256": "0" * 64})
    loaded, load_model = [], store_module.load_model
    monkeypatch.setattr(store_module, "load_model",
                        lambda path, *rest: loaded.append(path.stem) or load_model(path, *rest))
    store = load_store(settings_for(card_dir), only="tiny")
    assert loaded == ["tiny"] and store.ready("tiny").ready
    assert not store.get("other").ready and "not loaded" in store.get("other").error
    with pytest.raises(ModelNotFound, match="no model 'nope'; known models: broken, other, tiny"):
        load_store(settings_for(card_dir), only="nope").ready("nope")
    assert loaded == ["tiny"]


def test_missing_folder_is_skipped(settings_for, tmp_path):
    assert len(load_store(settings_for(tmp_path / "nowhere"))) == 0


def test_labels_file_beside_the_card(write_tiny_card, settings_for, card_dir):
    (card_dir / "classes.txt").write_text("cat\ndog\n\nbird\n")
    write_tiny_card(labels={"file": "classes.txt", "names": None})
    model = load_store(settings_for(card_dir)).get("tiny")
    assert model.labels == ["cat", "dog", "bird"]


def test_torchvision_weights_offline_fail_clearly(card_dir, settings_for, monkeypatch):
    def offline(*_args, **_kwargs):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    (card_dir / "r18.toml").write_text(
        'id = "r18"\nname = "ResNet-18"\n[architecture]\ntorchvision = "resnet18"\n'
        '[weights]\ntorchvision = "IMAGENET1K_V1"\n')
    model = load_store(settings_for(card_dir)).get("r18")
    assert model.status == "error"
    assert "could not download ResNet18_Weights.IMAGENET1K_V1" in model.error
    assert "needs internet access" in model.error and "weights.file" in model.error


def test_torchvision_weights_supply_labels_and_preprocessing(card_dir, settings_for, monkeypatch):
    """With the download stubbed by a local state dict, the weights' meta fills in what the card omits,
    and the file is read with weights_only=True."""
    import torchvision

    state = torchvision.models.resnet18(weights=None).state_dict()
    calls = []

    def local(url, **kwargs):
        calls.append(kwargs)
        return state

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", local)
    (card_dir / "r18.toml").write_text(
        'id = "r18"\nname = "ResNet-18"\n[architecture]\ntorchvision = "resnet18"\n'
        '[weights]\ntorchvision = "IMAGENET1K_V1"\n')
    model = load_store(settings_for(card_dir)).get("r18")
    assert model.ready, model.error
    assert calls[0]["weights_only"] is True and calls[0]["check_hash"] is True
    assert len(model.labels) == 1000 and model.labels[0] == "tench"
    assert model.preprocessing.size == (224, 224) and model.preprocessing.resize == 256
    assert model.preprocessing.mean == pytest.approx((0.485, 0.456, 0.406))


def test_unknown_torchvision_names(card_dir, settings_for):
    (card_dir / "a.toml").write_text(
        'id = "a"\nname = "A"\n[architecture]\ntorchvision = "resnet181"\n[weights]\ntorchvision = "X"\n')
    (card_dir / "b.toml").write_text(
        'id = "b"\nname = "B"\n[architecture]\ntorchvision = "resnet18"\n[weights]\ntorchvision = "IMAGENET9K"\n')
    store = load_store(settings_for(card_dir))
    assert "unknown torchvision model 'resnet181'; did you mean resnet18" in store.get("a").error
    assert "has no weights 'IMAGENET9K'; valid: IMAGENET1K_V1" in store.get("b").error


def test_output_must_be_class_scores(card_dir, settings_for, write_tiny_card):
    (card_dir / "featuresonly.py").write_text(
        "from torch import nn\n"
        "def build():\n    return nn.Sequential(nn.Conv2d(3, 4, 3))\n")
    write_tiny_card(architecture={"callable": "featuresonly:build", "kwargs": {}},
                    weights={"file": "none.safetensors", "sha256": None})
    from safetensors.torch import save_file
    from torch import nn
    save_file(nn.Sequential(nn.Conv2d(3, 4, 3)).state_dict(), str(card_dir / "none.safetensors"))
    model = load_store(settings_for(card_dir)).get("tiny")
    assert "expects class scores of shape (n, classes)" in model.error


def test_cards_in_two_folders_each_run_their_own_module(tmp_path, settings_for):
    """Two card folders that each hold a `nets.py`: Python's module cache must not hand the second card the
    first folder's architecture."""
    from safetensors.torch import save_file
    from torch import nn

    from app.store.checkpoints import sha256_file
    from tests.conftest import card_toml

    folders = []
    for name, width in (("first", 4), ("second", 6)):
        folder = tmp_path / name
        folder.mkdir()
        (folder / "nets.py").write_text(
            "from torch import nn\n\n"
            "def build():\n"
            f"    return nn.Sequential(nn.Conv2d(3, {width}, 3, padding=1), nn.ReLU(),\n"
            f"                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear({width}, 2))\n")
        torch.manual_seed(0)
        module = nn.Sequential(nn.Conv2d(3, width, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                               nn.Linear(width, 2))
        save_file(module.state_dict(), str(folder / "w.safetensors"))
        (folder / f"{name}.toml").write_text(card_toml({
            "id": name, "name": name, "architecture": {"callable": "nets:build"},
            "weights": {"file": "w.safetensors", "sha256": sha256_file(folder / "w.safetensors")},
            "input": {"size": [16, 16], "mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]}}))
        folders.append(folder)
    store = load_store(settings_for(*folders))
    for name, width in (("first", 4), ("second", 6)):
        model = store.get(name)
        assert model.ready, model.error
        assert model.layer("0").shape[0] == width
    import sys
    assert "nets" not in sys.modules  # nothing of a card's folder is left cached for the next card


def test_weights_inside_an_installed_package(write_tiny_card, settings_for, card_dir, tmp_path, monkeypatch,
                                            caplog):
    """`weights.package` finds `file` in an installed package's folder without importing the package; a
    missing package is listed with the command that installs it (the card's `install`, or pip's)."""
    site = tmp_path / "site"
    (site / "tiny_weights_pkg" / "data").mkdir(parents=True)
    (site / "tiny_weights_pkg" / "__init__.py").write_text("raise RuntimeError('imported')\n")
    monkeypatch.syspath_prepend(str(site))
    write_tiny_card(weights={"package": "tiny_weights_pkg", "file": "data/tiny.safetensors"})
    (card_dir / "tiny.safetensors").rename(site / "tiny_weights_pkg" / "data" / "tiny.safetensors")
    write_tiny_card("gone", weights={"package": "no_such_weights_pkg"})
    write_tiny_card("gone-hinted", weights={"package": "no_such_weights_pkg", "install": "pip install -e '.[x]'"})
    caplog.set_level("INFO", logger="app.store.store")
    store = load_store(settings_for(card_dir))
    model = store.get("tiny")
    assert model.ready, model.error
    assert model.weights_sha256 == model.card.weights.sha256
    assert store.get("gone").error == ("weights.package: the Python package 'no_such_weights_pkg' that holds this "
                                       "model's weights is not installed; install it with: pip install "
                                       "no_such_weights_pkg")
    assert store.get("gone-hinted").error.endswith("install it with: pip install -e '.[x]'")
    # A missing optional package is said at warning level; a broken card stays an error.
    assert store.get("gone").optional and not store.get("tiny").optional
    said = [r.levelname for r in caplog.records if r.getMessage().startswith("model gone not loaded")]
    assert said == ["WARNING"]


def test_labels_from_torchvision_weights_metadata(write_tiny_card, settings_for, card_dir):
    write_tiny_card("imagenet-names", labels={"names": None, "torchvision": "ResNet50_Weights.IMAGENET1K_V2"})
    write_tiny_card("unknown-names", labels={"names": None, "torchvision": "ResNet50_Weights.NOPE"})
    store = load_store(settings_for(card_dir))
    assert store.get("imagenet-names").error == ("labels.torchvision ResNet50_Weights.IMAGENET1K_V2 gives 1000 "
                                                 "class names but the model outputs 3 classes")
    assert "torchvision has no weights 'ResNet50_Weights.NOPE'" in store.get("unknown-names").error
