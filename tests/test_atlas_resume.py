"""An index build killed mid-way (SIGKILL, in a subprocess) resumes to the same atlas as an uninterrupted one,
dissection included (the demo split has concept labels).

The kill comes at a fixed point, not after a delay: the build checkpoints after its first batch (with
`index_checkpoint_seconds` 0 the first check always saves), and the process kills itself from its progress
callback once the second batch has run, before that batch can be checkpointed. So the build is always
interrupted mid-way, with one batch of work lost and the checkpoint at image BATCH to resume from."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

from app.demo.dataset import write_split
from tests.atlas_helpers import assert_same_atlas
from tests.conftest import DEMO_MODELS_ONLY_ARGS

LAYERS = ["stem.0", "block2", "block4"]
IMAGES, BATCH = 60, 20  # three batches: checkpointed, lost to the kill, never started
# `fovea index` whose progress callback SIGKILLs the process when it reports image KILL_AT done.
KILLED_AT = """
import os, signal, sys
import app.atlas.indexer as indexer
from app.cli import main

run_index = indexer.run_index


def killed_at(plan, data_dir, batches, checkpoint_seconds, progress, cancel, *rest):
    def report(done, total):
        progress(done, total)
        if done == KILL_AT:
            os.kill(os.getpid(), signal.SIGKILL)
    return run_index(plan, data_dir, batches, checkpoint_seconds, report, cancel, *rest)


indexer.run_index = killed_at
sys.exit(main())
"""


def _index(data_dir: Path, images: Path, kill_at: int | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "FOVEA_INDEX_CHECKPOINT_SECONDS": "0", "FOVEA_INDEX_BATCH_SIZE": str(BATCH),
           "FOVEA_INDEX_WORKERS": "0", "FOVEA_AUTO_INDEX_DEMO": "false"}
    program = ["-m", "app"] if kill_at is None else ["-c", KILLED_AT.replace("KILL_AT", str(kill_at))]
    return subprocess.run([sys.executable, *program, "index", "shapes-cnn", "--dataset", str(images),
                           "--layers", *LAYERS, "--k", "4", "--data-dir", str(data_dir), "--device", "cpu",
                           *DEMO_MODELS_ONLY_ARGS],
                          env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, timeout=300)


def test_killed_build_resumes_to_the_same_atlas(tmp_path):
    write_split(tmp_path / "demo", "heldout", IMAGES)
    images = tmp_path / "demo" / "heldout" / "images"

    interrupted = tmp_path / "interrupted"
    killed = _index(interrupted, images, kill_at=2 * BATCH)
    assert killed.returncode == -9, killed.stderr  # SIGKILL, not an exit of its own
    states = list((interrupted / "atlases" / "shapes-cnn").glob(".*.build/state.json"))
    assert len(states) == 1 and json.loads(states[0].read_text())["next_index"] == BATCH
    built = [p.name for p in (interrupted / "atlases" / "shapes-cnn").iterdir() if not p.name.startswith(".")]
    assert built == []  # no atlas: only the build's folder and the lock file

    resumed_run = _index(interrupted, images)
    assert resumed_run.returncode == 0, resumed_run.stderr
    # It resumed from its checkpoint, not from zero nor from the lost batch.
    assert int(re.search(rf"\] (\d+)/{IMAGES} images", resumed_run.stderr).group(1)) == BATCH
    uninterrupted = tmp_path / "uninterrupted"
    fresh_run = _index(uninterrupted, images)
    assert fresh_run.returncode == 0, fresh_run.stderr

    name = next(p.name for p in (uninterrupted / "atlases" / "shapes-cnn").iterdir() if not p.name.startswith("."))
    assert_same_atlas(interrupted / "atlases" / "shapes-cnn" / name, uninterrupted / "atlases" / "shapes-cnn" / name)
    # Nothing of the build is left behind, but the empty file whose lock serialises writers of the atlas.
    assert sorted(p.name for p in (interrupted / "atlases" / "shapes-cnn").iterdir()) == [f".{name}.lock", name]
