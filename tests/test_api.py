"""The JSON API through TestClient: models, layers, health, and one error shape for everything."""

from __future__ import annotations

import html
import re
from pathlib import Path

import pytest
from fastapi import routing
from fastapi.testclient import TestClient

from app.api.app import create_app
from app.api.shell import cli_flags
from app.settings import Settings


@pytest.fixture
def client(write_tiny_card, settings_for, card_dir):
    write_tiny_card("tiny")
    write_tiny_card("broken", weights={"sha256": "f" * 64})
    with TestClient(create_app(settings_for(card_dir))) as test_client:
        yield test_client


def assert_error(response, status: int, code: str, *words: str) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message", "detail"}
    assert body["error"]["code"] == code
    for word in words:
        assert word in body["error"]["message"]
    return body["error"]


def test_health(client):
    body = client.get("/api/health").json()
    assert body["status"] == "ok" and body["device"] == "cpu"
    assert (body["models_ready"], body["models_failed"]) == (1, 1)


def test_models_list_shows_status_and_errors(client):
    models = {m["id"]: m for m in client.get("/api/models").json()}
    assert models["tiny"]["status"] == "ready" and models["tiny"]["error"] is None
    assert models["tiny"]["architecture"] == "tinynet:tiny_net"
    assert models["tiny"]["weights"]["verified"] is True
    assert models["tiny"]["input"]["size"] == [16, 16]
    assert models["tiny"]["page"] == "/m/tiny"
    assert models["broken"]["status"] == "error"
    assert "weights.sha256 mismatch" in models["broken"]["error"]


def test_model_detail_has_layers_with_shapes(client):
    body = client.get("/api/models/tiny").json()
    layers = {layer["name"]: layer for layer in body["layers"]}
    assert layers["features.2"] == {"name": "features.2", "type": "Conv2d", "shape": [8, 8, 8], "units": 8,
                                    "parameters": 4 * 8 * 9 + 8, "default": False}
    # A conv followed by its ReLU is represented by the ReLU, here the `features` stack's own output.
    assert [name for name, layer in layers.items() if layer["default"]] == ["features.1", "features"]
    assert body["labels"] == ["red", "green", "blue"]
    assert body["num_classes"] == 3
    assert client.get("/api/models/tiny/layers/features.2").json() == layers["features.2"]


def test_broken_model_detail_is_served_with_its_error(client):
    body = client.get("/api/models/broken").json()
    assert body["status"] == "error" and body["layers"] == []


def test_unknown_model_and_layer_are_404_naming_them(client):
    error = assert_error(client.get("/api/models/nope"), 404, "model_not_found", "'nope'", "known models")
    assert error["detail"]["model"] == "nope"
    assert_error(client.get("/api/models/nope/layers/features.2"), 404, "model_not_found", "'nope'")
    assert_error(client.get("/api/models/tiny/layers/features.22"), 404, "layer_not_found",
                 "'features.22'", "did you mean features.2")
    assert_error(client.get("/api/models/broken/layers/features.2"), 409, "model_unavailable", "broken")


def test_unknown_routes_and_methods_use_the_error_shape(client):
    assert_error(client.get("/api/nothing-here"), 404, "not_found", "/api/nothing-here")
    assert_error(client.post("/api/models"), 405, "method_not_allowed")
    page = {"accept": "text/html,application/xhtml+xml,*/*;q=0.8"}  # what a browser's navigation sends
    assert_error(client.get("/api/nothing-here", headers=page), 404, "not_found")  # the API answers JSON
    assert_error(client.get("/static/nothing.js", headers=page), 404, "not_found")
    assert_error(client.get("/foo/bar"), 404, "not_found", "/foo/bar")
    shell = client.get("/foo/bar", headers=page)  # the dashboard's page, whose router says "No page at /foo/bar"
    assert shell.status_code == 404 and shell.headers["content-type"].startswith("text/html")
    assert 'id="view"' in shell.text


def test_the_page_names_the_flags_that_point_a_suggested_command_at_this_servers_cards_and_data(client, card_dir,
                                                                                                tmp_path):
    """A page suggests `fovea index MODEL ...`: a model from a card folder is unknown to the bare command, and its
    atlas would go to the default data folder, unseen by this server (frontend/js/dom.js adds these flags)."""
    page = client.get("/m/tiny", headers={"accept": "text/html"})
    flags = re.search(r'<meta name="fovea-cli-flags" content="([^"]*)">', page.text).group(1)
    assert html.unescape(flags) == f"--model-dir {card_dir} --data-dir {tmp_path / 'data'}"
    odd = Settings(data_dir=Path("/srv/my data"), model_dirs=[Path("/srv/cards")])
    assert cli_flags(odd) == "--model-dir /srv/cards --data-dir '/srv/my data'"
    assert cli_flags(Settings(data_dir=Path.home() / ".fovea", model_dirs=[])) == ""


# Every route outside /api, by its path as the app declares it. The pages each with URLs that must serve the
# shell; FastAPI's own documentation routes; the static files with one to fetch.
PAGES = {"/": ["/"], "/m/{path:path}": ["/m/tiny", "/m/anything-at-all"], "/image": ["/image"],
         "/search": ["/search", "/search?q=square"],
         "/image/{path:path}": ["/image/0123456789abcdef0123?model=tiny"]}
DOCS = {"/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc"}
STATIC = {"/static": "/static/js/app.js"}


def app_routes(app) -> list[routing.RouteContext]:
    """Every route the app answers, those of included routers too (FastAPI lists an included router as one
    entry of `app.routes`); each has `path` as declared, `path_format` as OpenAPI writes it, and `methods`."""
    return list(routing.iter_route_contexts(app.routes))


def test_pages_serve_the_shell(client):
    for path in [url for urls in PAGES.values() for url in urls]:
        response = client.get(path)
        assert response.status_code == 200, path
        assert '<script type="module" src="/static/js/app.js' in response.text
    static = client.get(STATIC["/static"])
    assert static.status_code == 200 and static.headers["cache-control"] == "no-cache"


def test_openapi_documents_every_api_route(client):
    """Read from the app's routes, not a list: a route added under /api is in the schema with each of its
    methods (and the schema has nothing the app does not serve); one added elsewhere fails until it is named
    above, where the page test requests it."""
    spec = client.get("/openapi.json").json()
    documented = {(method.upper(), path) for path, item in spec["paths"].items() for method in item}
    routes = app_routes(client.app)
    served = {(method, route.path_format) for route in routes if route.path.startswith("/api/")
              for method in route.methods - {"HEAD"}}
    assert len(served) >= 20 and served == documented
    others = {route.path for route in routes if not route.path.startswith("/api/")}
    assert others == set(PAGES) | DOCS | set(STATIC), "name a new route outside /api in PAGES, DOCS or STATIC"
    for path in DOCS - {"/docs/oauth2-redirect"}:  # that one is only for an OAuth2 login's redirect
        assert client.get(path).status_code == 200, path
