"""Every error Fovea raises on purpose. A leaf module: it imports nothing from the app.

The API turns any `FoveaError` into one JSON shape, `{"error": {"code", "message", "detail"}}`, with the
class's HTTP status; the CLI prints the message. Messages name the bad value and say what to do.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from typing import Any


class FoveaError(Exception):
    status_code = 400
    code = "bad_request"

    def __init__(self, message: str, **detail: Any):
        super().__init__(message)
        self.message = message
        self.detail = detail


class NotFound(FoveaError):
    status_code = 404
    code = "not_found"


class ModelNotFound(NotFound):
    code = "model_not_found"


class LayerNotFound(NotFound):
    code = "layer_not_found"


class ReadOnly(FoveaError):
    """A write on a read-only deployment (the `read_only` setting)."""

    status_code = 403
    code = "read_only"


class ModelUnavailable(FoveaError):
    """The model exists but failed to load; its card or weights need fixing."""

    status_code = 409
    code = "model_unavailable"


class InvalidInput(FoveaError):
    status_code = 422
    code = "invalid_input"


class WorkLimitExceeded(FoveaError):
    """A request that computed for longer than its time limit allows; stopped between forward passes."""

    status_code = 422
    code = "work_limit_exceeded"


class RequestCancelled(FoveaError):
    """The client went away, so its work stopped. Nobody reads the answer: the status (nginx's 499, "client
    closed request") is for the access log."""

    status_code = 499
    code = "client_closed_request"


class PayloadTooLarge(FoveaError):
    """An upload over a size limit (bytes or pixels)."""

    status_code = 413
    code = "payload_too_large"


class UnsupportedMediaType(FoveaError):
    """An upload that is not an image in an accepted format."""

    status_code = 415
    code = "unsupported_media_type"


class ModelCardError(FoveaError):
    """A model card, its architecture or its weights cannot be used. Raised while loading the store."""

    code = "model_card_error"


class WeightsError(ModelCardError):
    code = "weights_error"


class WeightsNotInstalled(WeightsError):
    """The package that ships a card's weights is not installed: an optional model, not a broken one."""

    code = "weights_not_installed"


class AtlasMissing(FoveaError):
    """No finished atlas for the model (and dataset) yet."""

    status_code = 409
    code = "atlas_missing"


def did_you_mean(name: str, known: Iterable[str], otherwise: str = "") -> tuple[list[str], str]:
    """The names among `known` closest to an unknown `name` (at most three, for an error's `suggestions`), and
    the hint that ends its message: `; did you mean a, b?`, or `otherwise` when none is close."""
    close = difflib.get_close_matches(str(name), [candidate for candidate in known if candidate], n=3)
    return close, f"; did you mean {', '.join(close)}?" if close else otherwise


def check_unit(layer: str, unit: int, units: int) -> None:
    """404 naming the valid range when `unit` is not a channel of a layer with `units` channels."""
    if not 0 <= unit < units:
        raise NotFound(f"unit {unit} is out of range for {layer}: valid units are 0 to {units - 1}", unit=unit,
                       valid=[0, units - 1])
