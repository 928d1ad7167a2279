"""Issue 16's quality check, minutes long (run with -m slow): on the demo models' default layers, with the
settings a page asks for by default, at least 90% of units get an image that drives them (untransformed, at
the model's input size) at least as high as their best demo image does. bench/featvis_quality.py prints the
distribution per layer; docs/benchmarks.md has the figures."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from app.atlas.registry import AtlasRegistry
from app.store.store import load_store

BENCH = Path(__file__).resolve().parents[1] / "bench" / "featvis_quality.py"


def _bench():
    spec = importlib.util.spec_from_file_location("featvis_quality", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
@pytest.mark.parametrize("model_id", ["shapes-cnn", "shapes-mobilenet"])
def test_most_units_reach_their_best_demo_image(model_id, tmp_path_factory):
    bench = _bench()
    settings = bench.demo_settings(tmp_path_factory.mktemp("featvis-quality"))
    _, rows = bench.model_quality(load_store(settings), AtlasRegistry(settings.data_dir), settings, model_id)
    reached = np.concatenate([ratios >= 1 for *_, ratios in rows])
    assert reached.mean() >= bench.TARGET, {layer: f"{np.mean(ratios >= 1):.0%}" for layer, _, _, ratios in rows}
