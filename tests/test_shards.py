"""An index pass split into shards, each recorded into fresh accumulators and merged in order, ends in the
atlas a single pass builds: the same top-k ids, values, positions and maps, histograms, pooled activations,
dissection and class selectivity; the float64 statistics within 1e-9 (their sums add in another order).
In-process here; tests/test_ray_index.py runs the shards on a real Ray cluster."""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys
import threading
from functools import partial

import numpy as np
import pytest
import torch

from app.atlas.build import BuildCancelled, run_index, run_steps
from app.atlas.datasets import scan_folder
from app.atlas.indexer import make_plan
from app.atlas.loader import batches_from_disk
from app.atlas.shards import decode_state, encode_state, index_shard, merging_steps, shard_ranges
from app.demo.dataset import write_split
from app.engine.accumulators import ImageStats, TopK
from app.engine.dissection.top_activations import TopActivations
from app.engine.histogram import Histogram
from app.errors import InvalidInput
from app.settings import Settings
from app.store.store import load_store
from tests.atlas_helpers import assert_same_atlas
from tests.conftest import DEMO_MODELS_ONLY

IMAGES, BATCH, SHARD = 90, 16, 20  # shards of 2 batches (20 rounds up to 32): 32 + 32 + 26 images


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """The demo's held-out scenes (classes and concept masks: the pass dissects and scores classes too), a
    plan over three layers, and its single-pass atlas."""
    root = tmp_path_factory.mktemp("shards")
    write_split(root / "demo", "heldout", IMAGES)
    settings = Settings(data_dir=root / "single", device="cpu", index_batch_size=BATCH, index_workers=0,
                        auto_index_demo=False, **DEMO_MODELS_ONLY)
    model = load_store(settings).ready("shapes-cnn")
    plan = make_plan(model, scan_folder(root / "demo" / "heldout" / "images"), settings,
                     layers=["stem.0", "block2", "block4"], k=5)
    assert plan.concepts is not None and plan.class_selectivity
    single = run_index(plan, settings.data_dir, partial(batches_from_disk, plan.dataset, model.preprocessing,
                                                         BATCH, workers=0))
    return root, plan, single


def _shards(plan, start):
    """Each shard recorded on its own, its state sent through bytes as between processes."""
    for rows in shard_ranges(start, len(plan.dataset), plan.batch_size, SHARD):
        batches = batches_from_disk(plan.dataset, plan.model.preprocessing, plan.batch_size, rows.start, 0,
                                    stop=rows.stop)
        yield rows, decode_state(encode_state(index_shard(plan, rows, batches)))


def test_shards_are_whole_batches():
    assert shard_ranges(0, 90, 16, 20) == [range(0, 32), range(32, 64), range(64, 90)]
    assert shard_ranges(32, 90, 16, 1) == [range(32, 48), range(48, 64), range(64, 80), range(80, 90)]
    assert shard_ranges(90, 90, 16, 20) == []


def test_merged_shards_build_the_single_pass_atlas(demo, tmp_path):
    root, plan, single = demo
    merged = run_steps(plan, tmp_path, merging_steps(plan, partial(_shards, plan)))
    assert_same_atlas(merged, single, float64_tolerance=1e-9)


def test_a_sharded_build_stopped_between_shards_resumes_to_the_same_atlas(demo, tmp_path):
    root, plan, single = demo
    cancel, seen = threading.Event(), []

    def progress(done, total):
        seen.append(done)
        if done == 32:
            cancel.set()  # after the first shard: it is checkpointed and the build stops

    with pytest.raises(BuildCancelled):
        run_steps(plan, tmp_path, merging_steps(plan, partial(_shards, plan)), progress=progress, cancel=cancel)
    assert seen == [0, 32]
    resumed = []
    merged = run_steps(plan, tmp_path, merging_steps(plan, partial(_shards, plan)),
                       progress=lambda done, total: resumed.append(done))
    assert resumed == [32, 64, 90]
    assert_same_atlas(merged, single, float64_tolerance=1e-9)


def test_accumulators_merge_as_one_pass():
    """Random maps with ties (rounded values, a clamp) split at an uneven point: merged state equals one pass."""
    generator = torch.Generator().manual_seed(0)
    maps = (torch.randn(40, 6, 5, 5, generator=generator) * 4).round().clamp(max=6) / 2
    ids = torch.arange(40)
    for split in (1, 17):
        one, first, second = (TopK(6, 7, (5, 5)) for _ in range(3))
        for topk, part in ((one, slice(0, 40)), (first, slice(0, split)), (second, slice(split, 40))):
            flat = maps[part].reshape(-1, 6, 25)
            topk.update(flat, ids[part], flat.amax(2), flat.mean(2))
        first.merge(second)
        for key, value in one.ordered().items():
            assert np.array_equal(first.ordered()[key], value), key

        one, first, second = Histogram(6, bins=64), Histogram(6, bins=64), Histogram(6, bins=64)
        one.update(maps.reshape(40, 6, 25))
        first.update(maps[:split].reshape(split, 6, 25))
        second.update(maps[split:].reshape(40 - split, 6, 25))
        first.flush()
        narrower = first.exponents < one.state()["exponents"]
        first.merge(second)
        assert narrower.any()  # some ranges grow as they merge
        for key, value in one.state().items():
            assert np.array_equal(first.state()[key], value), key

        one, first, second = ImageStats(6), ImageStats(6), ImageStats(6)
        spatial_max, spatial_mean = maps.amax((2, 3)).double().numpy(), maps.mean((2, 3)).double().numpy()
        one.update(spatial_max, spatial_mean)
        first.update(spatial_max[:split], spatial_mean[:split])
        second.update(spatial_max[split:], spatial_mean[split:])
        first.merge(second)
        for key, value in one.summary().items():
            np.testing.assert_allclose(first.summary()[key], value, rtol=1e-12, err_msg=key)
        assert (one.summary()["images_at_max"] > 1).any()  # the clamp ties images at the maximum


@pytest.mark.parametrize("trimmed", [False, True])
def test_top_activations_merge_as_one_pass(trimmed):
    """Dissection's top activations: the merged threshold and the entries above it are a single pass's, whether
    the union overflows the buffer or the part comes trimmed to its best `keep`, as a shard sends it."""
    maps = torch.randn(40, 3, 6, 6, generator=torch.Generator().manual_seed(1)).round(decimals=1)
    one, first, second = (TopActivations(3, (6, 6), 40, 0.99) for _ in range(3))
    for top, part in ((one, slice(0, 40)), (first, slice(0, 20)), (second, slice(20, 40))):
        for begin in range(part.start, part.stop, 5):
            batch = maps[begin:begin + 5]
            top.update(batch, torch.arange(begin, begin + 5), batch.amax((2, 3)))
    assert first.fill.sum() + second.fill.sum() > first.values.size  # the union overflows: it is cut
    if trimmed:
        second.trim()
        assert second.values.shape[1] == second.keep and (second.fill == second.keep).all()
    third = TopActivations(3, (6, 6), 40, 0.99)  # a part with nothing yet: merging it changes nothing
    first.merge(third)
    first.merge(second)
    np.testing.assert_array_equal(first.thresholds(), one.thresholds())

    def entries(top):
        found = top.above(one.thresholds())
        return sorted(zip(found["unit"], found["image"], found["y"], found["x"], found["value"],
                          map(tuple, found["neighbourhood"])))

    assert entries(first) == entries(one) and len(entries(one)) > 0


def test_top_activations_go_on_after_a_merge_as_one_pass():
    """A build merged from shards and resumed by a single process (a checkpoint of either kind resumes with
    the other) keeps recording into the merged state: the same as one pass over everything."""
    maps = torch.randn(60, 3, 6, 6, generator=torch.Generator().manual_seed(2)).round(decimals=1)
    one, merged, shard = (TopActivations(3, (6, 6), 60, 0.99) for _ in range(3))
    for top, begins in ((one, range(0, 60, 5)), (merged, range(0, 20, 5)), (shard, range(20, 40, 5))):
        for begin in begins:
            batch = maps[begin:begin + 5]
            top.update(batch, torch.arange(begin, begin + 5), batch.amax((2, 3)))
    shard.trim()
    merged.merge(shard)
    for begin in range(40, 60, 5):  # then on, in the merged state
        batch = maps[begin:begin + 5]
        merged.update(batch, torch.arange(begin, begin + 5), batch.amax((2, 3)))
    np.testing.assert_array_equal(merged.thresholds(), one.thresholds())
    found, expected = merged.above(one.thresholds()), one.above(one.thresholds())
    assert sorted(zip(found["unit"], found["image"], found["value"])) == sorted(
        zip(expected["unit"], expected["image"], expected["value"]))


def test_the_default_install_stays_free_of_ray():
    """Ray is the optional extra fovea[ray]: no default requirement names it, and neither the server nor the
    CLI imports it until `--ray` is asked for."""
    required = [line for line in importlib.metadata.requires("fovea") if "extra ==" not in line]
    assert not [line for line in required if line.lower().startswith("ray")]
    imported = subprocess.run([sys.executable, "-c", "import sys, app.main, app.cli, app.atlas.indexer; "
                               "print(sorted(m for m in sys.modules if m.split('.')[0] == 'ray'))"],
                              capture_output=True, text=True, check=True)
    assert imported.stdout.strip() == "[]"


def test_ray_without_the_extra_says_how_to_install_it(demo, monkeypatch):
    from app.atlas.ray_index import ray_steps

    root, plan, _ = demo
    monkeypatch.setitem(sys.modules, "ray", None)  # as in an install without fovea[ray]
    with pytest.raises(InvalidInput, match=r"pip install 'fovea\[ray\]'"):
        ray_steps(plan, Settings(), "auto", 64)
