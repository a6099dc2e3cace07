"""The page's files (``server/static``), served at ``/`` behind every API route."""

from __future__ import annotations

from typing import Any

from starlette.exceptions import HTTPException
from starlette.responses import Response
from starlette.staticfiles import StaticFiles
from starlette.types import Scope


class PageFiles(StaticFiles):
    """`StaticFiles`, with two differences:

    - a path with a ``.`` or ``..`` segment (``/api/conversations/%2e%2e%2f%2e%2e`` once
      decoded) is 404. Starlette would normalise it to some directory and redirect there,
      so a mistyped API path would answer with a redirect to the page;
    - files are revalidated on every load: after an upgrade a browser must not mix cached
      modules of the old version with new ones.
    """

    def get_path(self, scope: Scope) -> str:
        segments = scope["path"].split("/")
        if any(segment in (".", "..") or "\\" in segment for segment in segments):
            raise HTTPException(status_code=404, detail="not found")
        return super().get_path(scope)

    def file_response(self, *args: Any, **kwargs: Any) -> Response:
        response = super().file_response(*args, **kwargs)
        response.headers["Cache-Control"] = "no-cache"
        return response
