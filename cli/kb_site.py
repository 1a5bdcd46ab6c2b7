"""The lore explorer's static files (cli/explorer/), as `kb serve` serves them beside the API at `/`.

No build step: plain HTML, CSS and JavaScript. The pages call the API at the base URL of `config.js`
(`/v1` here, the same origin); deployed as a static site they call the stack's API URL instead and sign
each request with SigV4 (docs/auth.md, "The lore explorer as a static site").
"""

from __future__ import annotations

import mimetypes
import urllib.parse
from pathlib import Path

__all__ = ["SITE_ROOT", "StaticSite"]

SITE_ROOT = Path(__file__).resolve().parent / "explorer"
_TYPES = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8"}


class StaticSite:
    """`site(target)` -> (status, headers, body) for a file of `root`, or None for an API path (`/v1/...`)."""

    def __init__(self, root: Path = SITE_ROOT, *, api_prefix: str = "/v1/") -> None:
        self.root = root.resolve()
        self.api_prefix = api_prefix

    def __call__(self, target: str) -> tuple[int, dict[str, str], bytes] | None:
        path = urllib.parse.unquote(urllib.parse.urlsplit(target).path)
        if path.startswith(self.api_prefix) or path == self.api_prefix.rstrip("/"):
            return None
        relative = path.lstrip("/") or "index.html"
        candidate = (self.root / relative).resolve()
        if not candidate.is_relative_to(self.root) or not candidate.is_file():
            return None  # off the site: API Gateway's own 403 answers it, as before
        media_type = _TYPES.get(candidate.suffix) or mimetypes.guess_type(candidate.name)[0] or "text/plain"
        if media_type.startswith("text/") and "charset" not in media_type:
            media_type += "; charset=utf-8"
        headers = {
            "Content-Type": media_type,
            "Cache-Control": "no-cache",
            "X-Content-Type-Options": "nosniff",
            "Content-Security-Policy": "default-src 'self'; connect-src *; img-src 'self' data:",
        }
        return 200, headers, candidate.read_bytes()
