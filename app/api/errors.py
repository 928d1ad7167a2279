"""One JSON error shape for every error the API answers: `{"error": {"code", "message", "detail"}}`; a browser
navigating to a path that is no page gets the dashboard's page, with 404, which says so."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

from app.api.shell import shell, wants_page
from app.errors import FoveaError

log = logging.getLogger(__name__)


class ErrorBody(BaseModel):
    code: str
    message: str
    detail: dict = {}


class ErrorResponse(BaseModel):
    error: ErrorBody


def error_doc(description: str) -> dict:
    """One documented error status of a route, for `responses=`."""
    return {"model": ErrorResponse, "description": description}


# Declared on every operation. Any request can name a host the server does not answer to (trusted_hosts.py);
# any parameter can fail validation, and the handler below answers it in the one shape (FastAPI would
# otherwise document its own `{"detail": [...]}` for routes that declare no 422).
HOST_REFUSED = "A Host header that is not in the allowed_hosts setting."
COMMON_ERRORS = {400: error_doc(HOST_REFUSED),
                 422: error_doc("A parameter that fails validation, named in the message.")}


def error_response(status: int, code: str, message: str, **detail) -> JSONResponse:
    body = ErrorResponse(error=ErrorBody(code=code, message=message, detail=detail))
    return JSONResponse(body.model_dump(), status_code=status)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(FoveaError)
    async def fovea_error(_request: Request, exc: FoveaError) -> JSONResponse:
        return error_response(exc.status_code, exc.code, exc.message, **exc.detail)

    @app.exception_handler(RequestValidationError)
    async def validation_error(_request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = [
            {"field": ".".join(str(part) for part in error["loc"]), "message": error["msg"]}
            for error in exc.errors()
        ]
        message = "; ".join(f"{p['field']}: {p['message']}" for p in problems)
        return error_response(422, "invalid_input", message, problems=problems)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        if exc.status_code == 404 and wants_page(request):
            return shell(request, status_code=404)
        if exc.status_code == 404:
            response = error_response(404, "not_found", f"no such page or endpoint: {request.url.path}",
                                      path=request.url.path)
        elif exc.status_code == 405:
            response = error_response(405, "method_not_allowed",
                                      f"{request.method} is not allowed on {request.url.path}")
        else:
            response = error_response(exc.status_code, "http_error", str(exc.detail))
        response.headers.update(exc.headers or {})  # a 405's Allow, for one
        return response

    @app.exception_handler(Exception)
    async def unexpected_error(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return error_response(500, "internal_error",
                              f"unexpected {type(exc).__name__}; this is a bug in Fovea, please report it")
