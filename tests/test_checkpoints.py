"""Safe weight loading: wrappers, prefixes, mismatches named, pickled code refused, checksums checked."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from app.errors import WeightsError
from app.store.checkpoints import fit_state_dict, read_checkpoint
from tests.conftest import tiny_net


def _weights_equal(model, other) -> bool:
    return all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), other.state_dict().values()))


@pytest.mark.parametrize(
    "wrap",
    [
        lambda sd: sd,
        lambda sd: {"state_dict": sd, "epoch": 12, "best_prec1": torch.tensor(91.7)},
        lambda sd: {"model": sd, "optimizer": {"lr": 0.1}},
        lambda sd: {"checkpoint_version": 3, "state_dict": {"model_state_dict": sd}},
        lambda sd: {"state_dict": {f"module.{k}": v for k, v in sd.items()}},
        lambda sd: {f"module._orig_mod.{k}": v for k, v in sd.items()},
    ],
    ids=["plain", "nested-state_dict", "model-key", "doubly-nested", "dataparallel-prefix", "compiled-prefix"],
)
def test_checkpoint_layouts_load(tmp_path: Path, wrap):
    torch.manual_seed(1)
    source = tiny_net()
    path = tmp_path / "checkpoint.pth"
    torch.save(wrap(source.state_dict()), path)
    target = tiny_net()
    fit_state_dict(target, read_checkpoint(path), str(path))
    assert _weights_equal(source, target)


def test_safetensors_load(tmp_path: Path):
    source = tiny_net()
    path = tmp_path / "weights.safetensors"
    save_file(source.state_dict(), str(path))
    target = tiny_net()
    fit_state_dict(target, read_checkpoint(path), str(path))
    assert _weights_equal(source, target)


class _Payload:
    """Pickles to a call of os.system: what a malicious checkpoint does."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_malicious_pickle_is_refused_and_nothing_runs(tmp_path: Path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    torch.save({"state_dict": tiny_net().state_dict(), "extra": _Payload(marker)}, path)
    with pytest.raises(WeightsError, match="refused: the checkpoint holds Python objects") as caught:
        read_checkpoint(path)
    assert str(path) in caught.value.message
    assert not marker.exists()


def test_a_model_saved_whole_is_refused_with_what_it_holds_and_no_terminal_colours(tmp_path: Path):
    path = tmp_path / "whole.pt"
    torch.save(tiny_net(), path)
    with pytest.raises(WeightsError) as caught:
        read_checkpoint(path)
    message = caught.value.message
    assert "plain values (tinynet.TinyNet)" in message and "save its state dict instead" in message
    assert "\x1b" not in message and "weights_only" not in message  # not torch's advice to unpickle it


def test_corrupt_files_are_reported(tmp_path: Path):
    for name in ("junk.pth", "junk.safetensors"):
        path = tmp_path / name
        path.write_bytes(b"not a checkpoint at all")
        with pytest.raises(WeightsError, match=str(path)):
            read_checkpoint(path)


def test_no_state_dict_inside(tmp_path: Path):
    path = tmp_path / "meta.pth"
    torch.save({"epoch": 3, "config": {"lr": 0.1}}, path)
    with pytest.raises(WeightsError, match="no state dict found"):
        read_checkpoint(path)


def test_missing_unexpected_and_misshapen_keys_are_named():
    model = tiny_net()
    state = dict(model.state_dict())
    del state["head.bias"]
    state["head.extra"] = torch.zeros(1)
    state["features.0.weight"] = torch.zeros(5, 3, 3, 3)
    with pytest.raises(WeightsError) as caught:
        fit_state_dict(model, state, "ckpt")
    message = caught.value.message
    assert "missing keys: head.bias" in message
    assert "unexpected keys: head.extra" in message
    assert "features.0.weight (5, 3, 3, 3) (model has (4, 3, 3, 3))" in message
    assert caught.value.detail["missing"] == ["head.bias"]


def test_old_checkpoints_without_batchnorm_counters_load():
    """Checkpoints saved before PyTorch 0.4.1 have no `num_batches_tracked`; inference never reads it."""
    from torch import nn

    source = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))
    state = {k: v for k, v in source.state_dict().items() if not k.endswith("num_batches_tracked")}
    target = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))
    fit_state_dict(target, state, "old")
    assert torch.equal(target[1].running_var, source[1].running_var)
