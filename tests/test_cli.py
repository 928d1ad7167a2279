"""The `fovea` command, run as a user runs it."""

from __future__ import annotations

import json
import subprocess
import sys

from app.cli import main
from app.cli_jobs import ProgressBar
from app.store.checkpoints import sha256_file


def test_help_lists_the_commands():
    result = subprocess.run([sys.executable, "-m", "app", "--help"], capture_output=True, text=True, check=True)
    for command in ("serve", "models", "demo"):
        assert command in result.stdout


def test_models_list_and_inspect(write_tiny_card, card_dir, tmp_path, capsys):
    write_tiny_card("tiny")
    write_tiny_card("broken", weights={"sha256": "a" * 64})
    flags = ["--model-dir", str(card_dir), "--no-builtin-models", "--data-dir", str(tmp_path / "d")]
    assert main(["models", "list", *flags]) == 1  # a broken card makes the listing fail
    out = capsys.readouterr().out
    assert "tiny" in out and "ready" in out
    assert "broken" in out and "ERROR" in out and "weights.sha256 mismatch" in out

    assert main(["models", "inspect", "tiny", "--all", *flags]) == 0
    out = capsys.readouterr().out
    assert "features.2" in out and "8x8x8" in out and "Conv2d" in out

    assert main(["models", "inspect", "tiny", "--json", *flags]) == 0
    detail = json.loads(capsys.readouterr().out)
    assert [layer["shape"] for layer in detail["layers"] if layer["name"] == "features.2"] == [[8, 8, 8]]

    assert main(["models", "inspect", "nope", *flags]) == 1
    assert "no model 'nope'" in capsys.readouterr().err


def test_checksum(tmp_path, capsys):
    path = tmp_path / "w.bin"
    path.write_bytes(b"weights")
    assert main(["models", "checksum", str(path)]) == 0
    assert capsys.readouterr().out.strip() == sha256_file(path)
    assert main(["models", "checksum", str(tmp_path / "missing")]) == 1


def test_bad_setting_is_a_clear_error(capsys):
    assert main(["models", "list", "--device", "tpu"]) == 2
    assert "setting device: Value error, unknown device 'tpu'" in capsys.readouterr().err


def test_demo_generate(tmp_path, capsys):
    assert main(["demo", "generate", "--count", "5", "--out", str(tmp_path)]) == 0
    assert "heldout: 5 images" in capsys.readouterr().out
    assert len(list((tmp_path / "heldout" / "masks").iterdir())) == 5


def test_progress_in_a_log_is_a_line_every_few_seconds_and_never_nan(monkeypatch, capsys):
    """Where stderr is a file, the bar writes whole lines (the first, then at most one per LOG_SECONDS, and the
    last) instead of one line rewritten with carriage returns; before any rate, the time left is '?'."""
    clock = iter([0.0, 0.0, 1.0, 2.0, 12.0, 13.0])
    monkeypatch.setattr("app.cli_jobs.time.perf_counter", lambda: next(clock))
    bar = ProgressBar(width=4)
    for done in (0, 10, 20, 30, 40):
        bar(done, 40)
    lines = capsys.readouterr().err.splitlines()
    assert lines == ["[....] 0/40 images     0.0/s      ? s left",
                     "[###.] 30/40 images     2.5/s      4 s left",
                     "[####] 40/40 images     3.1/s      0 s left"]


def test_a_job_s_log_has_no_blank_lines(tmp_path, capsys):
    """Where stderr is a log, the line after the bar does not start with the newline that ends a terminal's
    open bar line."""
    from app.demo.dataset import write_split
    from tests.conftest import DEMO_MODELS_ONLY_ARGS

    write_split(tmp_path / "demo", "heldout", 6)
    assert main(["index", "shapes-cnn", "--dataset", str(tmp_path / "demo" / "heldout" / "images"), "--layers",
                 "block4", "--k", "2", "--data-dir", str(tmp_path / "data"), "--device", "cpu",
                 *DEMO_MODELS_ONLY_ARGS]) == 0
    lines = capsys.readouterr().err.splitlines()
    assert lines[-1].startswith("atlas written to ") and "" not in lines, lines


def test_a_missing_card_folder_is_named_by_the_listing(tmp_path, capsys):
    assert main(["models", "list", "--model-dir", str(tmp_path / "cards-typo"), "--no-builtin-models",
                 "--data-dir", str(tmp_path / "d")]) == 0
    captured = capsys.readouterr()
    assert f"model card folder {tmp_path / 'cards-typo'} does not exist" in captured.err
    assert "no model cards found" in captured.out


def test_index_says_which_images_it_skipped_and_which_layers_it_drops(tmp_path, capsys):
    from app.demo.dataset import write_split
    from tests.conftest import DEMO_MODELS_ONLY_ARGS

    images = tmp_path / "demo" / "heldout" / "images"
    write_split(tmp_path / "demo", "heldout", 6)
    (images / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    flags = ["--layers", "block4", "--k", "2", "--data-dir", str(tmp_path / "data"), "--device", "cpu",
             *DEMO_MODELS_ONLY_ARGS]
    assert main(["index", "shapes-cnn", "--dataset", str(images), *flags]) == 0
    err = capsys.readouterr().err
    assert "1 image(s) could not be read and were skipped, e.g. broken.png" in err  # under the folder named above
    assert "no --dataset given" not in err and "replaces" not in err

    flags[1] = "block3"  # --layers block3: a rebuild of the atlas that drops block4 says so
    assert main(["index", "shapes-cnn", "--dataset", str(images), *flags]) == 0
    assert ("the atlas this build replaces also has block4, which this one leaves out: to keep them, name every layer "
            "in --layers") in capsys.readouterr().err


def test_a_job_without_a_dataset_says_it_takes_the_demos(monkeypatch, capsys):
    import argparse

    import app.atlas.indexer as indexer
    from app.cli_jobs import chosen_dataset

    monkeypatch.setattr(indexer, "resolve_dataset", lambda argument, settings: argument)
    assert chosen_dataset(argparse.Namespace(dataset=None), None) == "demo"
    assert "no --dataset given: the demo's held-out shapes" in capsys.readouterr().err
    assert chosen_dataset(argparse.Namespace(dataset="/my/images"), None) == "/my/images"
    assert capsys.readouterr().err == ""
