"""Is a real answer one the OpenAPI document lists for its operation?"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

import httpx


def operation_of(spec: dict[str, Any], method: str, path: str) -> dict[str, Any] | None:
    """The operation whose path template matches ``path`` (most literal template first)."""
    templates = sorted(spec["paths"], key=lambda template: template.count("{"))
    for template in templates:
        pattern = "^" + re.sub(r"\{[^/]+\}", "[^/]+", template) + "$"
        if re.match(pattern, path):
            return spec["paths"][template].get(method.lower())  # type: ignore[no-any-return]
    return None


def undocumented(spec: dict[str, Any], response: httpx.Response) -> str | None:
    """None when the answer's status is documented, else a line saying what is missing."""
    method = response.request.method
    path = urlsplit(str(response.request.url)).path
    operation = operation_of(spec, method, path)
    if operation is None:
        return f"{method} {path}: no such operation in the document"
    if str(response.status_code) not in operation["responses"]:
        return f"{method} {path}: {response.status_code} is not documented"
    return None
