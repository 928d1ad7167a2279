"""The dashboard's one page (the front end routes on the path), and which requests read it."""

from __future__ import annotations

import shlex

from fastapi import Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

from app import __version__
from app.settings import FRONTEND_DIR, Settings

templates = Jinja2Templates(directory=str(FRONTEND_DIR))


def shell(request: Request, status_code: int = 200) -> HTMLResponse:
    """The page; with 404, what a browser gets at a path that is no page (the front end says so in words)."""
    return templates.TemplateResponse(request, "index.html",
                                      {"version": __version__, "cli_flags": cli_flags(request.app.state.settings)},
                                      status_code=status_code)


def cli_flags(settings: Settings) -> str:
    """What a `fovea` command that a page suggests needs to act on what this server reads: its card folders and,
    unless it is the default, its data folder (the server may have had them from flags or an environment that
    the user's shell has not)."""
    flags = [f"--model-dir {shlex.quote(str(folder))}" for folder in settings.model_dirs]
    if settings.data_dir.expanduser().resolve() != Settings.model_fields["data_dir"].default.resolve():
        flags.append(f"--data-dir {shlex.quote(str(settings.data_dir))}")
    return " ".join(flags)


def wants_page(request: Request) -> bool:
    """A browser navigating to a path outside the API and the static files: it reads a page, not JSON."""
    path = request.url.path
    return (request.method == "GET" and "text/html" in request.headers.get("accept", "")
            and path != "/api" and not path.startswith(("/api/", "/static/")))
