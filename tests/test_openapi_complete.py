"""Typed edges, enforced: every operation in /openapi.json documents its success body with a real schema (JSON
by a model, binary by its media type) and its errors in the one error shape, and no router reads
`request.app.state` (routers take shared state through the typed dependencies of app/api/deps.py)."""

from __future__ import annotations

import io
import re
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from app.api import schemas
from app.api.app import create_app
from app.settings import Settings

ROUTERS = Path(__file__).resolve().parents[1] / "app" / "api" / "routers"
METHODS = {"get", "post", "put", "patch", "delete"}


@pytest.fixture(scope="module")
def spec(tmp_path_factory) -> dict:
    settings = Settings(data_dir=tmp_path_factory.mktemp("openapi") / "data", device="cpu", index_workers=0,
                        auto_index_demo=False, builtin_models=False)
    with TestClient(create_app(settings)) as client:
        return client.get("/openapi.json").json()


def operations(spec: dict) -> list[tuple[str, dict]]:
    return [(f"{method.upper()} {path}", operation) for path, item in spec["paths"].items()
            for method, operation in item.items() if method in METHODS]


def is_typed(schema: dict, spec: dict) -> bool:
    """A `$ref` to a component with properties, or an inline schema that says what it holds (not `{}` nor a
    bare `{"type": "object"}` that allows anything)."""
    if "$ref" in schema:
        component = spec["components"]["schemas"][schema["$ref"].rsplit("/", 1)[-1]]
        return is_typed(component, spec)
    if any(key in schema for key in ("anyOf", "oneOf", "allOf")):
        return all(is_typed(part, spec) for key in ("anyOf", "oneOf", "allOf") for part in schema.get(key, []))
    if schema.get("type") == "array":
        return is_typed(schema.get("items", {}), spec)
    if schema.get("type") == "object":
        return bool(schema.get("properties")) or isinstance(schema.get("additionalProperties"), dict)
    return schema.get("type") in {"string", "integer", "number", "boolean", "null"}


def test_the_spec_has_operations(spec):
    assert len(operations(spec)) >= 15


def test_every_operation_documents_a_typed_success_body(spec):
    untyped = []
    for label, operation in operations(spec):
        successes = {status: response for status, response in operation["responses"].items()
                     if status.startswith("2")}
        if not successes:
            untyped.append(f"{label}: no 2xx response")
        for status, response in successes.items():
            for media_type, content in response.get("content", {}).items():
                if media_type == "application/json":
                    if not is_typed(content.get("schema", {}), spec):
                        untyped.append(f"{label} {status}: untyped JSON {content.get('schema')}")
                elif media_type.startswith("text/"):
                    untyped.append(f"{label} {status}: {media_type}, not a declared body")
            if not response.get("content"):
                untyped.append(f"{label} {status}: no content declared")
    assert not untyped, "\n".join(untyped)


def test_binary_answers_declare_their_media_type(spec):
    for label, operation in operations(spec):
        if label.endswith((".png", "/file")) or label.startswith("GET /api/datasets/{dataset}/images/"):
            content = operation["responses"]["200"]["content"]
            assert any(media.startswith("image/") for media in content), (label, content)


def test_every_error_uses_the_one_error_shape(spec):
    wrong = []
    for label, operation in operations(spec):
        for status, response in operation["responses"].items():
            if status[0] in "45":
                schema = response.get("content", {}).get("application/json", {}).get("schema", {})
                if schema.get("$ref") != "#/components/schemas/ErrorResponse":
                    wrong.append(f"{label} {status}: {schema}")
    assert not wrong, "\n".join(wrong)


def test_operations_that_take_ids_declare_their_not_found(spec):
    missing = [label for label, operation in operations(spec)
               if "{" in label and "404" not in operation["responses"]]
    assert not missing, missing


def test_routers_read_state_through_dependencies():
    reads = [f"{path.name}:{number}: {line.strip()}" for path in sorted(ROUTERS.glob("*.py"))
             for number, line in enumerate(path.read_text().splitlines(), 1) if re.search(r"\bapp\.state\b", line)]
    assert not reads, "read shared state through app/api/deps.py:\n" + "\n".join(reads)


# Real answers against their declared models: routes that answer through FastJSONResponse skip FastAPI's
# validation on the way out, so the models stay honest here.
ANSWERS = ["/api/models/shapes-cnn/atlases", "/api/models/shapes-cnn/layers/block4/units?maps=true&limit=5",
           "/api/models/shapes-cnn/layers/block4/units/3", "/api/models/shapes-cnn/layers/block4/units/3/maps",
           "/api/models/shapes-cnn/layers/block4/receptive-field",
           "/api/models/shapes-cnn/layers/block4/units/3/activation?image=2", "/api/methods",
           "/api/datasets/demo/samples", "/api/images/demo:3", "/api/images/{upload}",
           "/api/images/demo:3/predictions?model=shapes-cnn",
           "/api/images/demo:3/units?model=shapes-cnn&layer=block4&maps=true&limit=4",
           "/api/images/demo:3/cam?model=shapes-cnn&methods=gradcam,eigencam&metrics=confidence,pointing"]


@pytest.fixture(scope="module")
def demo_client(tmp_path_factory):
    from tests.atlas_helpers import demo_atlas

    root = tmp_path_factory.mktemp("answers")
    settings = Settings(data_dir=root / "data", device="cpu", index_workers=0, auto_index_demo=False)
    demo_atlas(root, settings, images=8)
    with TestClient(create_app(settings)) as client:
        yield client


def test_answers_match_their_declared_models(demo_client):
    spec = demo_client.get("/openapi.json").json()
    picture = io.BytesIO()
    Image.new("RGB", (40, 30), (200, 40, 40)).save(picture, format="PNG")
    receipt = demo_client.post("/api/images", files={"file": ("red.png", picture.getvalue(), "image/png")})
    checked = [("post", "/api/images", receipt)]
    for url in ANSWERS:
        response = demo_client.get(url.format(upload=receipt.json()["id"]))
        assert response.status_code == 200, (url, response.text)
        checked.append(("get", urlsplit(url).path, response))
    for method, path, response in checked:
        template = next(template for template in spec["paths"]
                        if re.fullmatch(re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(template)), path))
        schema = spec["paths"][template][method]["responses"][str(response.status_code)]["content"][
            "application/json"]["schema"]
        body = response.json()
        validate(body, schema)
        assert not undeclared(body, schema, spec), (template, undeclared(body, schema, spec))


def validate(body, schema: dict) -> None:
    """`body` against the model the schema names (one of them, for a union); pydantic raises naming the field."""
    refs = [part["$ref"] for part in schema.get("oneOf", schema.get("anyOf", [schema]))]
    errors = []
    for ref in refs:
        try:
            getattr(schemas, ref.rsplit("/", 1)[-1]).model_validate(body)
            return
        except ValueError as error:
            errors.append(error)
    raise errors[0]


def undeclared(value, schema: dict, spec: dict) -> list[str]:
    """Keys of `value` that its schema does not name (pydantic's schemas allow extra keys unless told not to)."""
    if "$ref" in schema:
        return undeclared(value, spec["components"]["schemas"][schema["$ref"].rsplit("/", 1)[-1]], spec)
    for key in ("anyOf", "oneOf"):
        if key in schema:
            branches = [undeclared(value, part, spec) for part in schema[key]]
            return min(branches, key=len)
    if isinstance(value, dict) and "properties" in schema:
        extra = [] if schema.get("additionalProperties") else [k for k in value if k not in schema["properties"]]
        return extra + [f"{k}.{inner}" for k, v in value.items() if k in schema["properties"]
                        for inner in undeclared(v, schema["properties"][k], spec)]
    if isinstance(value, list) and "items" in schema:
        return [inner for item in value for inner in undeclared(item, schema["items"], spec)]
    return []
