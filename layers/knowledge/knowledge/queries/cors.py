"""The knowledge API's CORS answer headers: the one browser origin allowed to read its answers.

The lore explorer, hosted apart from the API (docs/auth.md), calls it from the browser. API Gateway answers
the preflight (OPTIONS) and its own errors itself (template.yaml); each answer of the function carries the
origin too, or the browser would hide it from the page. One fixed origin, never an echo of the request's
`Origin`: any other site's page gets answers it cannot read.
"""

from __future__ import annotations

from typing import Any

__all__ = ["allow_origin"]

# Response headers the page may read besides the CORS-safelisted ones.
_EXPOSED = "Server-Timing, Retry-After, Allow"


def allow_origin(response: dict[str, Any], origin: str) -> dict[str, Any]:
    """`response` (a Lambda proxy answer) with the CORS headers for `origin`; unchanged when it is empty."""
    if not origin:
        return response
    headers = {"Access-Control-Allow-Origin": origin, "Access-Control-Expose-Headers": _EXPOSED}
    if "multiValueHeaders" in response or "headers" not in response:
        multi = dict(response.get("multiValueHeaders") or {})
        multi.update({name: [value] for name, value in headers.items()})
        return {**response, "multiValueHeaders": multi}
    return {**response, "headers": {**(response.get("headers") or {}), **headers}}
