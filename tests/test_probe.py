"""Layer outputs and receptive fields on tiny hand-checked networks."""

from __future__ import annotations

import torch
from torch import nn

from app.engine.hooks import hook_count
from app.engine.probe import layer_output, receptive_field


def _net() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 4, 3, padding=1), nn.ReLU(),
                         nn.MaxPool2d(2), nn.Conv2d(4, 4, 3, padding=1)).eval()


def test_receptive_fields_by_hand():
    net = _net()
    # Position (3, 3): one 3x3 conv sees pixels 2-4; two see 1-5; after a 2x2 pool, cells 6-7 through a
    # 5x5 field, pixels 4-9; a 3x3 conv on the pooled map, cells 2-4, pixels 4-11, through 5x5: 2-11.
    expected = {"0": (2, 2, 5, 5), "2": (1, 1, 6, 6), "4": (4, 4, 10, 10), "5": (2, 2, 12, 12)}
    for layer, box in expected.items():
        field = receptive_field(net, layer, (32, 32))
        assert field.method == "gradient"
        assert field.box(3, 3) == box, layer
    assert receptive_field(net, "5", (32, 32)).box(0, 0) == (0, 0, 6, 6)  # clipped at the image's corner


def test_probing_leaves_the_model_as_it_was():
    net = _net()
    before = {name: p.detach().clone() for name, p in net.named_parameters()}
    receptive_field(net, "5", (32, 32))
    output = layer_output(net, "2", torch.zeros(2, 3, 32, 32))
    assert output.shape == (2, 4, 32, 32) and not output.requires_grad
    assert hook_count(net) == 0 and not net.training
    assert all(p.grad is None and torch.equal(p, before[name]) for name, p in net.named_parameters())


def test_layer_output_stops_at_the_layer():
    net = _net()
    calls = []
    net[5].register_forward_hook(lambda *_: calls.append("last"))
    layer_output(net, "2", torch.zeros(1, 3, 8, 8))
    assert calls == []  # the layers after it never ran


class _Detached(nn.Module):
    """A model whose second stage has no gradient path to the input."""

    def __init__(self):
        super().__init__()
        self.first = nn.Conv2d(3, 2, 3, padding=1)
        self.second = nn.Conv2d(2, 2, 1)

    def forward(self, x):
        return self.second(self.first(x).detach())


def test_fixed_fraction_when_no_gradient_reaches_the_input():
    field = receptive_field(_Detached().eval(), "second", (40, 40))
    assert field.method == "fixed" and field.size == (20.0, 20.0)
    assert field.box(20, 20) == (10, 10, 30, 30)  # half the image, centred on the cell
    assert field.box(0, 0) == (0, 0, 10, 10)
