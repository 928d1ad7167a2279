"""The dashboard's page paths that API answers link to, built in one place (as `frontend/js/urls.js` builds
them on the other side). Links to atlas pages name their dataset, so a shared link never changes content
when the model gains another atlas. A unit of a kind other than a channel has the kind in its path
(`/m/{model}/{layer}/{kind}/{unit}`); a channel's path leaves it out, as every link written before kinds did."""

from __future__ import annotations

from urllib.parse import quote, urlencode

from app.atlas.kinds import CHANNEL


def layer_page(model_id: str, layer: str, dataset: str, kind: str = CHANNEL) -> str:
    return f"/m/{quote(model_id)}/{quote(layer)}{_kind(kind)}?{urlencode({'dataset': dataset})}"


def unit_page(model_id: str, layer: str, unit: int, dataset: str, kind: str = CHANNEL) -> str:
    return f"/m/{quote(model_id)}/{quote(layer)}{_kind(kind)}/{unit}?{urlencode({'dataset': dataset})}"


def _kind(kind: str) -> str:
    return "" if kind == CHANNEL else f"/{quote(kind)}"
