"""Shared fixtures: tiny model cards written into temporary folders, and settings that point at them."""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from app.settings import BUILTIN_MODEL_DIR, Settings
from app.store.checkpoints import sha256_file

FIXTURES = Path(__file__).parent / "fixtures"
SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"

sys.path.insert(0, str(FIXTURES))
from tinynet import tiny_net  # noqa: E402

# TestClient's requests say `Host: testserver`: every app a test builds answers to it besides the default hosts.
os.environ["FOVEA_ALLOWED_HOSTS"] = ",".join(["testserver", *Settings.model_fields["allowed_hosts"].default_factory()])
# Apps and servers that tests start (in this process or as subprocesses) render no feature visualisations in
# the background: every one that finds a demo atlas would spend its CPU on hundreds of units while other tests
# time out waiting. tests/test_first_renders.py turns it on where it is the subject.
os.environ["FOVEA_AUTO_VISUALIZE_DEMO"] = "false"
# Under pytest-xdist each worker, and every process its tests start, computes on one thread: PyTorch's default of a
# thread per core, in every worker at once, oversubscribes the cores and makes the suite slower than one worker.
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ["OMP_NUM_THREADS"] = "1"
    torch.set_num_threads(1)


# The bundled demo models without the bundled ImageNet model, whose load (layer discovery and the memory-format
# trial, forward passes at 260 px) is most of a store's start, some 5-10 s: for tests of the API over the demo
# models and their atlas. As settings, and as `fovea serve` arguments.
DEMO_MODELS_ONLY = {"builtin_models": False, "model_dirs": [BUILTIN_MODEL_DIR]}
# Server settings for tests that are not about forwarding: model work in the server's own process, which starts
# in half the time (the session servers, the schema fuzz and tests/test_model_worker.py keep the model worker).
WITHOUT_MODEL_WORKER = {"FOVEA_MODEL_WORKER": "false"}
DEMO_MODELS_ONLY_ARGS = ("--no-builtin-models", "--model-dir", str(BUILTIN_MODEL_DIR))


def toml_value(value) -> str:
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {toml_value(v)}" for k, v in value.items()) + " }"
    return json.dumps(value)


def card_toml(card: dict) -> str:
    """A TOML card from a dict of top-level keys and tables (tables written last, as TOML requires)."""
    lines = [f"{key} = {toml_value(value)}" for key, value in card.items() if not isinstance(value, dict)]
    for table, fields in card.items():
        if isinstance(fields, dict):
            lines += ["", f"[{table}]"] + [f"{key} = {toml_value(value)}" for key, value in fields.items()]
    return "\n".join(lines) + "\n"


@pytest.fixture
def card_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "cards"
    folder.mkdir()
    shutil.copy(FIXTURES / "tinynet.py", folder / "tinynet.py")
    return folder


@pytest.fixture
def write_tiny_card(card_dir: Path):
    """Write a working TinyNet card (and its weights) into `card_dir`; keyword arguments override tables."""

    def write(model_id: str = "tiny", seed: int = 0, **overrides) -> Path:
        torch.manual_seed(seed)
        weights = card_dir / f"{model_id}.safetensors"
        save_file(tiny_net().state_dict(), str(weights))
        card = {
            "id": model_id,
            "name": f"Tiny {model_id}",
            "architecture": {"callable": "tinynet:tiny_net", "kwargs": {"num_classes": 3}},
            "weights": {"file": weights.name, "sha256": sha256_file(weights)},
            "input": {"size": [16, 16], "mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]},
            "labels": {"names": ["red", "green", "blue"]},
        }
        for key, value in overrides.items():
            if value is None:
                card.pop(key, None)
            elif isinstance(value, dict) and isinstance(card.get(key), dict):
                merged = {**card[key], **value}
                card[key] = {k: v for k, v in merged.items() if v is not None}
            else:
                card[key] = value
        path = card_dir / f"{model_id}.toml"
        path.write_text(card_toml(card))
        return path

    return write


@pytest.fixture
def settings_for(tmp_path: Path):
    """Settings with only the given card folders (no demo models) and a temporary data directory."""

    def make(*folders: Path, builtin: bool = False) -> Settings:
        return Settings(data_dir=tmp_path / "data", model_dirs=list(folders), builtin_models=builtin,
                        device="cpu")

    return make


DEMO_ATLAS_IMAGES = 12


@pytest.fixture(scope="session")
def shared_demo_atlas(tmp_path_factory) -> Path:
    """Built once per session: DEMO_ATLAS_IMAGES held-out demo scenes under `root/demo` and shapes-cnn's
    `block4` atlas of them (k = 4) in `root/data`. Read it through `demo_atlas_root`, never directly."""
    from tests.atlas_helpers import demo_atlas

    root = tmp_path_factory.mktemp("demo-atlas")
    return demo_atlas(root, Settings(data_dir=root / "data", device="cpu", index_workers=0,
                                     auto_index_demo=False), images=DEMO_ATLAS_IMAGES)


def copy_demo_atlas(shared_demo_atlas: Path, root: Path) -> Path:
    """`root` with its own copy of the demo atlas's `data` (uploads, caches and lock files stay there) and
    `demo`, the images, shared read-only (the atlas names their absolute path)."""
    shutil.copytree(shared_demo_atlas / "data", root / "data")
    (root / "demo").symlink_to(shared_demo_atlas / "demo", target_is_directory=True)
    return root


@pytest.fixture(scope="module")
def demo_atlas_root(shared_demo_atlas: Path, tmp_path_factory) -> Path:
    """The session's demo atlas, copied for one test module: what the API tests of images and CAMs serve,
    with Settings(data_dir=root / "data", ...)."""
    return copy_demo_atlas(shared_demo_atlas, tmp_path_factory.mktemp("demo-atlas-copy"))


@pytest.fixture(scope="session")
def scoring_server(shared_demo_atlas: Path, tmp_path_factory):
    """`fovea serve` over real HTTP on a copy of the demo atlas (no first-run build), whose faithfulness curves
    take one pixel per step: a CAM request with metrics is minutes of work, to watch and to walk away from.
    Each test that starts such a request ends it (its client goes away) before it returns."""
    from tests.live_server import live_server

    root = copy_demo_atlas(shared_demo_atlas, tmp_path_factory.mktemp("scoring-server"))
    env = {"FOVEA_AUTO_INDEX_DEMO": "false", "FOVEA_CAM_METRIC_STEPS": "12544"}
    with live_server(root / "data", *DEMO_MODELS_ONLY_ARGS, env=env) as base:
        yield base


@pytest.fixture(scope="session")
def demo_server(tmp_path_factory):
    """`fovea serve` over real HTTP with the bundled models, which build their demo atlases at first start,
    plus a folder with one broken card. One for the session: the browser tests share its costly first start."""
    from tests.live_server import live_server

    root = tmp_path_factory.mktemp("demo-server")
    broken = root / "cards"
    broken.mkdir()
    (broken / "broken.toml").write_text('id = "broken"\nname = "Broken card"\n[architecture]\n')
    # 200 demo images, not 2,000: the first start's atlases are built in a tenth of the time.
    # Feature visualisations of 4 steps: every unit page asks for one, and each holds the model while it renders.
    environment = {"FOVEA_DEMO_IMAGES": "200", "FOVEA_VISUALIZATION_STEPS": "4"}
    with live_server(root / "data", "--model-dir", str(broken), env=environment) as base:
        yield base


def _browser_helpers() -> list:
    from tests import browser

    return [browser.browser, browser.watched_page]


def _drives_a_browser(function, helpers: list, seen: set) -> bool:
    """Whether `function`, or a function of the tests it calls by a global name (followed through), opens
    the session's Chromium through tests/browser.py."""
    function = getattr(function, "__wrapped__", function)
    code = getattr(function, "__code__", None)
    if code is None or code in seen:
        return False
    seen.add(code)
    codes, names = [code], set()
    while codes:  # the function's own names and those of the lambdas and functions defined inside it
        current = codes.pop()
        names.update(current.co_names)
        codes += [const for const in current.co_consts if hasattr(const, "co_names")]
    for name in names:
        value = function.__globals__.get(name)
        if any(value is helper for helper in helpers):
            return True
        if callable(value) and getattr(value, "__module__", "").startswith("tests.") and \
                _drives_a_browser(value, helpers, seen):
            return True
    return False


SERVER_LOG_LINES = 60  # of each running server's log, in a failing test's report


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    """A test that fails while servers run (session servers included) reports the end of each one's log: what
    the server said of the requests that failed, where CI keeps nothing else."""
    report = yield
    if report.failed:
        from tests.live_server import RUNNING_LOGS

        for base, path in list(RUNNING_LOGS.items()):
            lines = path.read_text(errors="replace").splitlines()[-SERVER_LOG_LINES:]
            report.sections.append((f"server log {base} (last {len(lines)} lines)", "\n".join(lines)))
    return report


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist reads the groups
def pytest_collection_modifyitems(config, items):
    """Each test gets its pytest-xdist group (below), and a test that drives Chromium (itself, through its
    fixtures or through the tests' helpers) is marked `browser`, whether or not its module says so:
    `-m 'not browser'` leaves out every one of them."""
    _group_by_shared_fixtures(items)
    helpers = _browser_helpers()
    for item in items:
        if item.get_closest_marker("browser") or not hasattr(item, "obj"):
            continue
        functions = [item.obj] + [definitions[-1].func for name, definitions in
                                  item._fixtureinfo.name2fixturedefs.items() if definitions]
        seen: set = set()
        if any(_drives_a_browser(function, helpers, seen) for function in functions):
            item.add_marker(pytest.mark.browser)


# Session servers whose start is costly, in the order a test that uses several is grouped by.
SHARED_SERVERS = ("demo_server", "scoring_server")


def _group_by_shared_fixtures(items) -> None:
    """Groups for pytest-xdist's `--dist loadgroup` (pyproject's addopts): the tests of one module run in one worker,
    which sets up its module fixtures (servers, clusters, atlases) once, and so do all the tests of a session server."""
    for item in items:
        fixtures = getattr(item, "fixturenames", ())
        group = next((server for server in SHARED_SERVERS if server in fixtures), item.nodeid.split("::")[0])
        item.add_marker(pytest.mark.xdist_group(group))
