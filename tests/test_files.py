"""Relative paths kept inside their folder (app/files.py `path_inside`), as a dataset's files and labels are read."""

import pytest

from app.errors import InvalidInput
from app.files import path_inside


@pytest.fixture()
def root(tmp_path):
    folder = tmp_path / "dataset"
    (folder / "masks").mkdir(parents=True)
    (folder / "masks" / "1.png").write_bytes(b"png")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.png").write_bytes(b"secret")
    (folder / "out").symlink_to(outside, target_is_directory=True)
    (folder / "masks" / "out.png").symlink_to(outside / "secret.png")
    (folder / "masks" / "same.png").symlink_to(folder / "masks" / "1.png")
    (folder / "inner").symlink_to(folder / "masks", target_is_directory=True)
    return folder.resolve()


@pytest.mark.parametrize(("relpath", "expected"), [
    ("masks/1.png", "masks/1.png"),
    ("masks/./1.png", "masks/1.png"),
    ("masks/../masks/1.png", "masks/1.png"),
    ("masks/same.png", "masks/same.png"),  # a link that stays inside
    ("inner/1.png", "inner/1.png"),  # a folder linked inside
    ("out/../masks/1.png", "masks/1.png"),  # '..' folded before anything is followed: it names masks/1.png
    ("masks/missing.png", "masks/missing.png"),  # not there: the caller's open says so
])
def test_paths_below_the_root_are_given_with_dots_folded(root, relpath, expected):
    assert path_inside(root, relpath) == root / expected


@pytest.mark.parametrize("relpath", ["../outside/secret.png", "/etc/passwd", "masks/../../outside/secret.png",
                                     ".", "", "out/secret.png", "masks/out.png"])
def test_paths_that_lead_outside_are_refused_links_included(root, relpath):
    with pytest.raises(InvalidInput, match="outside the dataset folder"):
        path_inside(root, relpath)
