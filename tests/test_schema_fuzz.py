"""schemathesis against the real OpenAPI schema of a running server (real HTTP), with real model, layer, unit,
dataset and image ids seeded among the generated values: no answer may be a server error, and every answer
must conform to the schema's declared statuses and shapes."""

from __future__ import annotations

import io

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from PIL import Image
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import status_code_conformance

from tests.conftest import DEMO_MODELS_ONLY_ARGS
from tests.live_server import live_server

EXAMPLES = 12  # per operation and mode: about 30 operations, each with its seeds mixed in


@pytest.fixture(scope="module")
def seeded_server(demo_atlas_root):
    root = demo_atlas_root
    # Work per request bounded as a server's settings allow: short CAMs, small feature visualisations.
    environment = {"FOVEA_AUTO_INDEX_DEMO": "false", "FOVEA_CAM_MAX_SECONDS": "2", "FOVEA_VISUALIZATION_STEPS": "2",
                   "FOVEA_VISUALIZATION_MAX_STEPS": "4", "FOVEA_VISUALIZATION_MAX_SIZE": "48"}
    with live_server(root / "data", *DEMO_MODELS_ONLY_ARGS, env=environment) as base:
        picture = io.BytesIO()
        Image.new("RGB", (40, 30), (200, 40, 40)).save(picture, format="PNG")
        upload = httpx.post(f"{base}/api/images", files={"file": ("red.png", picture.getvalue(), "image/png")})
        seeds = {"model": ["shapes-cnn", "shapes-mobilenet"], "layer": ["block4", "block3", "features.3"],
                 "unit": [0, 5, 191], "dataset": ["demo"], "image": [0, 3, 11],
                 "image_id": ["demo:0", "demo:7", upload.json()["id"]], "methods": ["gradcam", "gradcam,eigencam"],
                 "target": [0, 3], "token": ["fuzz-token"]}
        yield base, seeds


def test_no_server_errors(seeded_server):
    base, seeds = seeded_server
    schema = schemathesis.openapi.from_url(f"{base}/openapi.json")
    failures = {}
    for result in schema.get_all_operations():
        operation = result.ok()
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            try:
                _fuzz(operation.as_strategy(generation_mode=mode), base, seeds)
            except Unsatisfiable:
                assert mode == GenerationMode.NEGATIVE  # no invalid input exists (a path of free-form strings)
            except Exception as error:  # noqa: BLE001 - collected, reported per operation below
                failures[f"{operation.label} ({mode.value})"] = f"{type(error).__name__}: {error}"[:2000]
    assert not failures, "\n\n".join(f"{label}: {text}" for label, text in failures.items())


def _fuzz(strategy, base: str, seeds: dict) -> None:
    @given(case=strategy, data=st.data())
    @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    def run(case, data):
        # Half the time each known parameter takes a real value, so requests get past validation to the code
        # behind it (a random model id never reaches a layer lookup).
        for parameters in (case.path_parameters, case.query):
            for name in list(parameters or {}):
                if name in seeds and data.draw(st.booleans(), label=f"seed {name}"):
                    parameters[name] = data.draw(st.sampled_from(seeds[name]), label=name)
        case.call_and_validate(base_url=base, checks=[not_a_server_error, status_code_conformance], timeout=30)

    run()
