"""An index build killed mid-way (SIGKILL, in a subprocess) resumes to the same atlas as an uninterrupted one."""

from __future__ import annotations

import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from app.demo.dataset import write_split

LAYERS = ["stem.0", "block2", "block4"]
VOLATILE_META = {"seconds", "created", "first_built"}


def _index(data_dir: Path, images: Path, stderr=subprocess.DEVNULL) -> subprocess.Popen:
    env = {**os.environ, "FOVEA_INDEX_CHECKPOINT_SECONDS": "0", "FOVEA_INDEX_BATCH_SIZE": "8",
           "FOVEA_INDEX_WORKERS": "0", "FOVEA_AUTO_INDEX_DEMO": "false"}
    return subprocess.Popen([sys.executable, "-m", "app", "index", "shapes-cnn", "--dataset", str(images),
                             "--layers", *LAYERS, "--k", "4", "--data-dir", str(data_dir), "--device", "cpu"],
                            env=env, stdout=subprocess.DEVNULL, stderr=stderr, text=True)


def _atlas_contents(folder: Path) -> dict:
    with sqlite3.connect(folder / "atlas.sqlite") as db:
        tables = {table: db.execute(f"SELECT * FROM {table} ORDER BY 1, 2, 3").fetchall()
                  for table in ("images", "layers", "units", "topk", "similar")}
        meta = {key: value for key, value in db.execute("SELECT key, value FROM meta") if key not in VOLATILE_META}
    arrays = {}
    for path in sorted(folder.glob("*.np[yz]")):
        if path.suffix == ".npy":
            arrays[path.name] = np.load(path)
        else:
            with np.load(path) as data:
                arrays.update({f"{path.name}:{key}": data[key] for key in data.files})
    return {"tables": tables, "meta": meta, "arrays": arrays}


def test_killed_build_resumes_to_the_same_atlas(tmp_path):
    write_split(tmp_path / "demo", "heldout", 120)
    images = tmp_path / "demo" / "heldout" / "images"

    interrupted = tmp_path / "interrupted"
    process = _index(interrupted, images)
    state = None
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        states = list((interrupted / "atlases" / "shapes-cnn").glob(".*.build/state.json")) \
            if (interrupted / "atlases" / "shapes-cnn").is_dir() else []
        state = json.loads(states[0].read_text()) if states else None  # written atomically
        if state:  # any checkpoint: kill the build there
            break
        assert process.poll() is None, "the build finished before it could be interrupted"
        time.sleep(0.02)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert state is not None and state["next_index"] < 120
    assert not (interrupted / "atlases" / "shapes-cnn" / images.parent.name).exists()

    resumed_run = _index(interrupted, images, stderr=subprocess.PIPE)
    _, log = resumed_run.communicate(timeout=300)
    assert resumed_run.returncode == 0, log
    first_progress = int(re.search(r"\] (\d+)/120 images", log).group(1))
    # It resumed from its last checkpoint (perhaps one written after the state we read), not from zero.
    assert state["next_index"] <= first_progress < 120
    uninterrupted = tmp_path / "uninterrupted"
    assert _index(uninterrupted, images).wait(timeout=300) == 0

    name = next(p.name for p in (uninterrupted / "atlases" / "shapes-cnn").iterdir() if not p.name.startswith("."))
    resumed = _atlas_contents(interrupted / "atlases" / "shapes-cnn" / name)
    fresh = _atlas_contents(uninterrupted / "atlases" / "shapes-cnn" / name)
    assert resumed["meta"] == fresh["meta"]
    assert resumed["tables"] == fresh["tables"]
    assert resumed["arrays"].keys() == fresh["arrays"].keys()
    for key in fresh["arrays"]:
        assert np.array_equal(resumed["arrays"][key], fresh["arrays"][key]), key
    # Nothing of the build is left behind, but the empty file whose lock serialises writers of the atlas.
    assert sorted(p.name for p in (interrupted / "atlases" / "shapes-cnn").iterdir()) == [f".{name}.lock", name]
