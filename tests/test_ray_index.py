"""`fovea index --ray` on a real local Ray cluster: started by this module (two CPUs, so two model replicas in
their own worker processes), not a mock. Its atlases equal single-process builds (the float64 statistics
within 1e-9) on the demo scenes and on real CIFAR-10 JPEGs with a third-party ResNet-20; a replica SIGKILLed
while it runs a shard is restarted and the shard retried; a driver SIGKILLed between shards resumes from the
shards it merged. Each ends in the single-process atlas. The tests of the driver's resumption and of a refusal
run one replica: every replica is a process that imports torch and the app."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path

import pytest

from app.atlas.build import run_steps
from app.atlas.datasets import scan_folder
from app.atlas.indexer import index_model, make_plan
from app.atlas.ray_index import ray_steps
from app.demo.dataset import write_split
from app.errors import FoveaError
from app.settings import Settings
from app.store.store import load_store
from tests.atlas_helpers import assert_same_atlas
from tests.conftest import DEMO_MODELS_ONLY, DEMO_MODELS_ONLY_ARGS
from tests.test_byo_resnet20 import CHECKPOINT, CIFAR, cifar_sample, write_resnet20_card

ray = pytest.importorskip("ray", reason="the optional extra fovea[ray] is not installed")

IMAGES, BATCH, SHARD = 160, 16, 16  # ten shards of one batch each
LAYERS = ["stem.0", "block2", "block4"]
RUNNING_SHARD = "ray::MapWorker(MapBatches(ShardIndexer)).submit"  # a replica's title while it records a shard


@pytest.fixture(scope="module")
def cluster():
    """A Ray cluster of this machine with two CPUs; its address, for drivers in other processes."""
    context = ray.init(num_cpus=2, include_dashboard=False, logging_level="warning")
    yield context.address_info["gcs_address"]
    ray.shutdown()


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """The demo's held-out scenes (with concept masks and classes) and their single-process atlas."""
    root = tmp_path_factory.mktemp("ray-demo")
    write_split(root / "demo", "heldout", IMAGES)
    settings = _settings(root / "single")
    dataset = scan_folder(root / "demo" / "heldout" / "images")
    model = load_store(settings).ready("shapes-cnn")
    return root, dataset, index_model(model, dataset, settings, layers=LAYERS, k=5)


def _settings(data_dir: Path, **overrides) -> Settings:
    return Settings(data_dir=data_dir, device="cpu", index_batch_size=BATCH, index_workers=0,
                    index_shard_images=SHARD, auto_index_demo=False, **DEMO_MODELS_ONLY, **overrides)


def test_a_ray_build_equals_the_single_process_build_though_a_replica_is_killed_mid_shard(cluster, demo, tmp_path):
    """A replica SIGKILLed while it records a shard (its process title says so) is restarted by Ray and its
    shard retried: the build ends, merging shard after shard in order, in the single-process atlas."""
    root, dataset, single = demo
    killed, built = [], threading.Event()

    def kill_a_running_replica():  # until the build ends: on a loaded machine a replica starts late
        while not killed and not built.is_set():
            for pid in _processes_titled(RUNNING_SHARD):
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
                break
            time.sleep(0.02)

    killer = threading.Thread(target=kill_a_running_replica)
    killer.start()
    settings = _settings(tmp_path)
    seen = []
    try:
        atlas = index_model(load_store(settings).ready("shapes-cnn"), dataset, settings, layers=LAYERS, k=5,
                            ray="auto", progress=lambda done, total: seen.append(done))
    finally:
        built.set()
        killer.join()
    assert len(killed) == 1 and not Path(f"/proc/{killed[0]}").exists()
    assert seen == list(range(0, IMAGES + 1, SHARD))  # a shard's images count once it is merged
    assert_same_atlas(atlas, single, float64_tolerance=1e-9)


def test_a_killed_driver_resumes_from_the_shards_it_merged(cluster, demo, tmp_path):
    """The driver SIGKILLs itself when its second shard is merged, before that shard can be checkpointed (the
    first always is, with FOVEA_INDEX_CHECKPOINT_SECONDS 0): the next build resumes from the first shard."""
    root, dataset, single = demo
    killed = _driver(cluster, root, tmp_path, kill_at=2 * SHARD)
    assert killed.returncode == -9, killed.stderr  # SIGKILL, not an exit of its own
    build = tmp_path / "atlases" / "shapes-cnn" / f".{dataset.name}.build" / "state.json"
    assert json.loads(build.read_text())["next_index"] == SHARD

    settings = _settings(tmp_path, index_checkpoint_seconds=0)  # the driver's settings, here in this process
    seen = []
    atlas = index_model(load_store(settings).ready("shapes-cnn"), dataset, settings, layers=LAYERS, k=5,
                        ray="auto", ray_replicas=1, progress=lambda done, total: seen.append(done))
    assert seen[0] == SHARD  # from its checkpoint, not from zero
    assert_same_atlas(atlas, single, float64_tolerance=1e-9)


@pytest.mark.skipif(not (CHECKPOINT.is_file() and CIFAR.is_dir()),
                    reason="../shared/data (the ResNet-20 checkpoint and CIFAR-10 test images) is not present")
def test_ray_build_of_real_images_equals_the_single_process_build(cluster, tmp_path):
    cards, sample = tmp_path / "cards", tmp_path / "cifar10-sample"
    cards.mkdir()
    write_resnet20_card(cards)
    for path in cifar_sample(per_class=40):  # links to 400 real JPEGs, in the ImageFolder layout
        (sample / path.parent.name).mkdir(parents=True, exist_ok=True)
        (sample / path.parent.name / path.name).symlink_to(path)
    dataset = scan_folder(sample)
    atlases = {}
    for name, ray_address in (("single", None), ("ray", "auto")):
        settings = Settings(data_dir=tmp_path / name, model_dirs=[cards], builtin_models=False, device="cpu",
                            auto_index_demo=False, index_batch_size=50, index_workers=0, index_shard_images=100)
        model = load_store(settings).ready("resnet20-cifar10")
        atlases[name] = index_model(model, dataset, settings, layers=["layer1", "layer2", "layer3"], k=16,
                                    ray=ray_address)
    assert_same_atlas(atlases["ray"], atlases["single"], float64_tolerance=1e-9)


# `fovea index` whose progress callback SIGKILLs the process when it reports image KILL_AT merged.
KILLED_AT = """
import os, signal, sys
import app.atlas.indexer as indexer
from app.cli import main

run_steps = indexer.run_steps


def killed_at(plan, data_dir, steps, checkpoint_seconds, progress, *rest):
    def report(done, total):
        progress(done, total)
        if done == KILL_AT:
            os.kill(os.getpid(), signal.SIGKILL)
    return run_steps(plan, data_dir, steps, checkpoint_seconds, report, *rest)


indexer.run_steps = killed_at
sys.exit(main())
"""


def _driver(address: str, root: Path, data_dir: Path, kill_at: int) -> subprocess.CompletedProcess:
    """`fovea index --ray ADDRESS` in its own process, checkpointing after every merged shard, killed at a
    fixed point."""
    env = {**os.environ, "FOVEA_INDEX_CHECKPOINT_SECONDS": "0", "FOVEA_INDEX_BATCH_SIZE": str(BATCH),
           "FOVEA_INDEX_WORKERS": "0", "FOVEA_INDEX_SHARD_IMAGES": str(SHARD), "FOVEA_AUTO_INDEX_DEMO": "false"}
    return subprocess.run([sys.executable, "-c", KILLED_AT.replace("KILL_AT", str(kill_at)), "index", "shapes-cnn",
                           "--dataset", str(root / "demo" / "heldout" / "images"), "--layers", *LAYERS, "--k", "5",
                           "--data-dir", str(data_dir), "--device", "cpu", "--ray", address, "--ray-replicas", "1",
                           *DEMO_MODELS_ONLY_ARGS],
                          env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, timeout=300)


def _processes_titled(title: str) -> list[int]:
    found = []
    for folder in Path("/proc").iterdir():
        try:
            if folder.name.isdigit() and (folder / "cmdline").read_bytes().split(b"\0")[0].decode().strip() == title:
                found.append(int(folder.name))
        except OSError:
            continue
    return found


def test_a_replica_that_would_build_another_atlas_refuses(cluster, demo, tmp_path):
    """A replica makes the driver's plan again on its own machine; where anything differs (here the histogram
    samples; on a cluster, other weights or files at the same path) it refuses, and the build says why."""
    root, dataset, _ = demo
    settings = _settings(tmp_path)
    plan = make_plan(load_store(settings).ready("shapes-cnn"), dataset, settings, layers=LAYERS, k=5)
    other = replace(plan, histogram_samples=plan.histogram_samples + 1)  # not what the settings make
    with pytest.raises(FoveaError, match="would build another atlas than the driver"):
        run_steps(other, tmp_path, ray_steps(other, settings, "auto", SHARD, replicas=1))
