"""The dashboard's pages. Every page path serves the same shell; the front end routes on the path, so a
reloaded or shared URL reproduces its view."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from app.api.shell import shell

router = APIRouter(include_in_schema=False)


def _shell(request: Request) -> HTMLResponse:
    return shell(request)


router.add_api_route("/", _shell, methods=["GET"], response_class=HTMLResponse)
router.add_api_route("/m/{path:path}", _shell, methods=["GET"], response_class=HTMLResponse)
router.add_api_route("/search", _shell, methods=["GET"], response_class=HTMLResponse)
router.add_api_route("/image", _shell, methods=["GET"], response_class=HTMLResponse)
router.add_api_route("/image/{path:path}", _shell, methods=["GET"], response_class=HTMLResponse)
