"""The Dockerfile builds and serves: its steps are replayed in a scratch folder, read from the Dockerfile itself.

No container tool can build the image here (podman builds, but no container registry is reachable to pull
the base image), so the test does what the image build does with Python's own tools: WORKDIR and COPY into
a scratch root, each RUN step's `pip install` into a fresh venv, then the image's CMD and HEALTHCHECK. The
venv reuses this interpreter's site-packages (torch and the rest, through a .pth file) and pip builds with
`--no-index --no-build-isolation`, so it needs no network and takes seconds.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import string
import subprocess
import sys
import sysconfig
from pathlib import Path

import httpx

from tests.live_server import live_server_process

REPO = Path(__file__).resolve().parents[1]
# RUN commands that set up the image's system (its user, the /data volume), not the package; not replayed.
SYSTEM_ONLY = {"useradd", "mkdir", "chown"}


def dockerfile_steps(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) per instruction, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", text)
    steps = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            instruction, _, arguments = line.partition(" ")
            steps.append((instruction.upper(), arguments.strip()))
    return steps


def copy_step(arguments: str, workdir: Path) -> None:
    """COPY SRC... DEST from the repository, as Docker does: a folder's contents go into DEST."""
    *sources, dest = shlex.split(arguments)
    assert not any(source.startswith("--") for source in sources), f"COPY flags are not replayed: {arguments}"
    target = workdir / dest
    for source in sources:
        path = REPO / source
        assert path.exists(), f"the Dockerfile copies {source}, which the repository does not have"
        if path.is_dir():
            shutil.copytree(path, target, dirs_exist_ok=True, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            into = target / path.name if dest.endswith("/") or len(sources) > 1 else target
            into.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, into)


def run_step(arguments: str, workdir: Path, venv_python: Path) -> None:
    for command in arguments.split("&&"):
        words = shlex.split(command)
        if words[0] in SYSTEM_ONLY:
            continue
        assert words[:2] == ["pip", "install"], f"the test does not know how to replay RUN {command.strip()!r}"
        # This interpreter's pip installs into the venv (`--python`); offline: everything it needs is present.
        result = subprocess.run(
            [sys.executable, "-m", "pip", "--python", str(venv_python), "install", "--no-index",
             "--no-build-isolation", "--disable-pip-version-check", *words[2:]],
            cwd=workdir, capture_output=True, text=True,
        )
        assert result.returncode == 0, f"RUN {command.strip()} failed:\n{result.stdout}\n{result.stderr}"


def make_venv(folder: Path) -> Path:
    """A fresh venv that sees this interpreter's packages (torch included) after its own."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(folder)], check=True)
    python = folder / "bin" / "python"
    own = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                         capture_output=True, text=True, check=True).stdout.strip()
    # A name sorted after the editable install's own .pth, so the copied package wins over this checkout's.
    Path(own, "zz_reuse_test_env.pth").write_text(sysconfig.get_path("purelib") + "\n")
    return python


def test_the_dockerfile_builds_and_serves(tmp_path):
    root, env, build_args, workdir = tmp_path / "image", {}, {}, None
    venv_python = make_venv(tmp_path / "venv")
    cmd = healthcheck = None
    for instruction, arguments in dockerfile_steps((REPO / "Dockerfile").read_text()):
        if instruction == "WORKDIR":
            workdir = root / arguments.lstrip("/")
            workdir.mkdir(parents=True, exist_ok=True)
        elif instruction == "ARG":  # its default, as `docker build` without --build-arg uses it
            name, _, default = arguments.partition("=")
            build_args[name] = default
        elif instruction == "ENV":
            env.update(pair.split("=", 1) for pair in shlex.split(arguments))
        elif instruction == "COPY":
            copy_step(arguments, workdir)
        elif instruction == "RUN":
            run_step(string.Template(arguments).substitute(build_args), workdir, venv_python)
        elif instruction == "CMD":
            cmd = json.loads(arguments)
        elif instruction == "HEALTHCHECK":
            healthcheck = arguments.split(" CMD ", 1)[1]
    assert cmd is not None and healthcheck is not None

    # The installed package is the copied one, not this checkout (which is not on the venv's path).
    clean = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    where = subprocess.run([str(venv_python), "-c", "import app; print(app.__file__)"], cwd=tmp_path,
                           capture_output=True, text=True, env=clean)
    assert Path(where.stdout.strip()).is_relative_to(workdir), where.stdout + where.stderr

    # The image's CMD with its ENV; the test's flags move host, port and data folder (set by ENV) aside.
    program = [str(venv_python.parent / cmd[0]), *cmd[1:]]
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    server_env = {**env, "PYTHONPATH": None, "FOVEA_AUTO_INDEX_DEMO": "false"}
    with live_server_process(data_dir, env=server_env, program=program, cwd=workdir) as (base, _process):
        health = httpx.get(f"{base}/api/health").json()
        cards = len(list((workdir / "model_store").rglob("*.toml")))  # the demo's and the ImageNet model's
        assert health["status"] == "ok" and (health["models_ready"], health["models_failed"]) == (cards, 0)
        assert httpx.get(f"{base}/").status_code == 200  # the front end is served from the copied folder
        # The HEALTHCHECK's own command, pointed at this server's port instead of the image's.
        image_address = f"127.0.0.1:{env['FOVEA_PORT']}/"
        assert image_address in healthcheck, "the HEALTHCHECK must ask the port the image serves on"
        words = shlex.split(healthcheck.replace(image_address, f"{base.removeprefix('http://')}/"))
        assert words[0] == "python"
        check = subprocess.run([str(venv_python), *words[1:]], capture_output=True, text=True, timeout=30)
        assert check.returncode == 0, check.stderr
