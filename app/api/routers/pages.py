"""The dashboard's pages. Every page path serves the same shell; the front end routes on the path, so a
reloaded or shared URL reproduces its view."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

from app import __version__
from app.settings import FRONTEND_DIR

router = APIRouter(include_in_schema=False)
templates = Jinja2Templates(directory=str(FRONTEND_DIR))


def _shell(request: Request) -> HTMLResponse:
    return templates.TemplateResponse(request, "index.html", {"version": __version__})


router.add_api_route("/", _shell, methods=["GET"], response_class=HTMLResponse)
router.add_api_route("/m/{path:path}", _shell, methods=["GET"], response_class=HTMLResponse)
router.add_api_route("/search", _shell, methods=["GET"], response_class=HTMLResponse)
router.add_api_route("/image", _shell, methods=["GET"], response_class=HTMLResponse)
router.add_api_route("/image/{path:path}", _shell, methods=["GET"], response_class=HTMLResponse)
