"""The dashboard's page paths that API answers link to, built in one place (as `frontend/js/urls.js` builds
them on the other side). Links to atlas pages name their dataset, so a shared link never changes content
when the model gains another atlas."""

from __future__ import annotations

from urllib.parse import quote, urlencode


def layer_page(model_id: str, layer: str, dataset: str) -> str:
    return f"/m/{quote(model_id)}/{quote(layer)}?{urlencode({'dataset': dataset})}"


def unit_page(model_id: str, layer: str, unit: int, dataset: str) -> str:
    return f"/m/{quote(model_id)}/{quote(layer)}/{unit}?{urlencode({'dataset': dataset})}"
