"""The API answers only what its OpenAPI schema declares. Every GET operation of the schema is called with
real ids, then with each parameter made unknown or malformed, with a broken model, and again with its
ETag; every status that comes back must be declared for that operation, and every refusal must have the
one error shape. A 405 names the methods that are allowed."""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient

from app.api.app import create_app
from tests.conftest import DEMO_MODELS_ONLY, FIXTURES, card_toml
from tests.test_api import assert_error
from tests.test_images_api import settings_in, upload
from tests.test_uploads import encode, gradient

BROKEN = "broken"  # a card whose weights file is missing: known, but never ready (409)
VALID = {"model": "shapes-cnn", "layer": "block4", "unit": "0", "dataset": "demo", "image": "3",
         "token": "no-such-request", "image_id": "demo:3", "name": "caption", "index": "0", "concept": "shape:square"}


def settings_with_a_broken_model(root):
    cards = root / "cards"
    cards.mkdir(exist_ok=True)
    (cards / "tinynet.py").write_text((FIXTURES / "tinynet.py").read_text())
    (cards / f"{BROKEN}.toml").write_text(card_toml({
        "id": BROKEN, "name": "Broken", "architecture": {"callable": "tinynet:tiny_net"},
        "weights": {"file": "missing.safetensors"},
        "input": {"size": [16, 16], "mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]},
        "labels": {"names": ["red", "green", "blue"]}}))
    return settings_in(root).model_copy(update={"model_dirs": [*DEMO_MODELS_ONLY["model_dirs"], cards],
                                                "visualization_steps": 2})  # every operation asked: keep it short


@pytest.fixture(scope="module")
def client(demo_atlas_root):
    app = create_app(settings_with_a_broken_model(demo_atlas_root))
    with TestClient(app, raise_server_exceptions=False) as test_client:
        yield test_client


def requests_for(path: str, operation: dict):
    """(why, path, query) for the operation: its valid form, then each parameter changed."""
    parameters = operation.get("parameters", [])
    unknown = [p["name"] for p in parameters if p["in"] == "path" and p["name"] not in VALID]
    assert not unknown, f"{path}: give VALID a valid value of {unknown}, so that this file requests it"
    valid = {p["name"]: VALID[p["name"]] for p in parameters
             if p["name"] in VALID and (p["required"] or p["name"] == "model")}  # `model` also when optional
    if path.startswith("/api/datasets/"):
        valid["image_id"] = "3"

    def build(values: dict) -> tuple[str, dict]:
        filled = re.sub(r"{(\w+)}", lambda m: values[m.group(1)], path)
        return filled, {p["name"]: values[p["name"]] for p in parameters
                        if p["in"] == "query" and p["name"] in values}

    yield ("valid", *build(valid))
    for parameter in parameters:
        name = parameter["name"]
        changes = ["~junk~", "99999"] + (["nope", BROKEN] if name == "model" else [])
        for value in changes:
            yield (f"{name}={value}", *build({**valid, name: value}))


def declared(operation: dict) -> set[int]:
    return {int(status) for status in operation["responses"]}


def test_every_status_an_operation_answers_is_declared(client):
    spec = client.get("/openapi.json").json()
    undeclared = []
    for path, operations in spec["paths"].items():
        if "get" not in operations:
            continue
        operation = operations["get"]
        for why, url, query in requests_for(path, operation):
            response = client.get(url, params=query)
            answers = [response]
            if why == "valid" and "etag" in response.headers:
                answers.append(client.get(url, params=query, headers={"If-None-Match": response.headers["etag"]}))
                assert answers[-1].status_code == 304, (url, answers[-1].text)
            for answer in answers:
                assert answer.status_code < 500, (url, query, answer.text)
                if answer.status_code not in declared(operation):
                    undeclared.append(f"GET {path} ({why}): {answer.status_code} {answer.text[:120]}")
                if answer.status_code >= 400:
                    assert_error(answer, answer.status_code, answer.json()["error"]["code"])
    assert not undeclared, "\n".join(undeclared)


# Operations other than GET, each with the test here that requests its every answer.
NOT_GET = {("post", "/api/images"): "test_every_upload_answer_is_declared",
           ("post", "/api/models/{model}/layers/{layer}/units/{unit}/notes"): "test_every_note_answer_is_declared"}


def test_every_operation_is_requested_here(client):
    """The GET operations are requested by the test above, read from the schema; any other operation is named
    in NOT_GET with its test, so a new one fails here until a test requests it."""
    spec = client.get("/openapi.json").json()
    others = {(method, path) for path, operations in spec["paths"].items() for method in operations if method != "get"}
    assert others == set(NOT_GET)
    assert all(name in globals() for name in NOT_GET.values())


def test_every_upload_answer_is_declared(client):
    operation = client.get("/openapi.json").json()["paths"]["/api/images"]["post"]
    data = encode(gradient(20, 20), "PNG")
    answers = {
        "new": upload(client, data),
        "again": upload(client, data),
        "not multipart": client.post("/api/images", content=b"garbage",
                                     headers={"content-type": "multipart/form-data; boundary=x"}),
        "no boundary": client.post("/api/images", content=b"abc", headers={"content-type": "multipart/form-data"}),
        "no file": client.post("/api/images", files={"picture": ("a.png", data)}),
        "not an image": upload(client, b"just text"),
        "too large": upload(client, b"\0" * 300_000),
    }
    assert [answer.status_code for answer in answers.values()] == [201, 200, 400, 400, 422, 415, 413]
    for why, answer in answers.items():
        assert answer.status_code in declared(operation), (why, answer.status_code)
        if answer.status_code >= 400:
            assert_error(answer, answer.status_code, answer.json()["error"]["code"])


def test_every_note_answer_is_declared(client):
    operation = client.get("/openapi.json").json()["paths"]["/api/models/{model}/layers/{layer}/units/{unit}/notes"]
    operation = operation["post"]
    notes = "/api/models/shapes-cnn/layers/block4/units/0/notes"
    answers = {
        "new": client.post(notes, json={"text": "corners", "author": "ada"}),
        "empty": client.post(notes, json={"text": ""}),
        "too long": client.post(notes, json={"text": "x" * 5000}),
        "too large": client.post(notes, content=b"{" + b" " * 100_000 + b"}",
                                 headers={"content-type": "application/json"}),
        "unknown model": client.post("/api/models/nope/layers/block4/units/0/notes", json={"text": "a"}),
        "broken model": client.post(f"/api/models/{BROKEN}/layers/block4/units/0/notes", json={"text": "a"}),
        "unit out of range": client.post("/api/models/shapes-cnn/layers/block4/units/999/notes", json={"text": "a"}),
    }
    assert [answer.status_code for answer in answers.values()] == [201, 422, 422, 413, 404, 409, 404]
    for why, answer in answers.items():
        assert answer.status_code in declared(operation), (why, answer.status_code)
        if answer.status_code >= 400:
            assert_error(answer, answer.status_code, answer.json()["error"]["code"])


def test_the_schema_documents_the_one_error_shape(client):
    spec = client.get("/openapi.json").json()
    assert "HTTPValidationError" not in spec["components"]["schemas"]  # FastAPI's shape, which we never answer
    for operations in spec["paths"].values():
        for operation in operations.values():
            for status, response in operation["responses"].items():
                if int(status) >= 400:
                    assert response["content"]["application/json"]["schema"] == {
                        "$ref": "#/components/schemas/ErrorResponse"}
    atlases = spec["paths"]["/api/models/{model}/atlases"]["get"]["responses"]
    assert {"404", "409"} <= set(atlases)
    assert "400" in spec["paths"]["/api/images"]["post"]["responses"]


def test_a_405_names_the_allowed_methods(client):
    response = client.post("/api/models")
    assert_error(response, 405, "method_not_allowed", "POST")
    assert response.headers["allow"] == "GET"
    assert client.delete("/api/images").headers["allow"] == "POST"
