"""The warm path: a running `kb serve` keeps PostgreSQL and the embedding model loaded for its $KB_HOME.

`kb serve` records itself in `$KB_HOME/serve.json` (its pid and API URL, `.../v1`) while it listens and removes the file
when it stops. The read commands (`search`, `context`, `history`, `relationships`, `events`, `worlds`)
then ask that server over HTTP instead of starting PostgreSQL and loading the model in a fresh process.
A record whose process is gone (a killed server) is ignored and removed. `KB_NO_SERVER=1` opts out.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from local_runtime.paths import kb_home

__all__ = ["SERVE_FILE", "alive", "clear_server", "local_client", "record_server", "running_server"]

SERVE_FILE = "serve.json"
_CONNECT_TIMEOUT_S = 0.5


def _path(home: Path | None = None) -> Path:
    return (home or kb_home()) / SERVE_FILE


def record_server(url: str, *, home: Path | None = None) -> Path:
    """Write this process's record (atomically: a reader never sees half a file)."""
    path = _path(home)
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text(json.dumps({"pid": os.getpid(), "url": url}), encoding="utf-8")
    partial.replace(path)
    return path


def clear_server(*, home: Path | None = None) -> None:
    """Remove the record if it is this process's own (a second server may have replaced it)."""
    path = _path(home)
    record = _read(path)
    if record is not None and record.get("pid") == os.getpid():
        path.unlink(missing_ok=True)


def _read(path: Path) -> dict[str, Any] | None:
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def alive(pid: int) -> bool:
    """Whether the process runs: it exists and has not exited (a zombie its parent has not reaped yet is
    gone, as far as serving goes)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process: it exists
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="ascii", errors="replace")
    except OSError:
        return True  # no /proc: the signal's answer is all there is
    return stat.rsplit(")", 1)[-1].split()[:1] != ["Z"]


def _listening(url: str) -> bool:
    parts = urllib.parse.urlsplit(url)
    if not parts.hostname or not parts.port:
        return False
    try:
        with socket.create_connection((parts.hostname, parts.port), timeout=_CONNECT_TIMEOUT_S):
            return True
    except OSError:
        return False


def running_server(*, home: Path | None = None) -> dict[str, Any] | None:
    """The record ({pid, url}) of a live `kb serve` for this $KB_HOME, or None. A stale record is removed."""
    path = _path(home)
    record = _read(path)
    if record is None:
        return None
    pid, url = record.get("pid"), record.get("url")
    if not isinstance(pid, int) or not isinstance(url, str) or not alive(pid):
        with contextlib.suppress(OSError):
            path.unlink()
        return None
    return record if _listening(url) else None


def local_client(*, home: Path | None = None) -> Any | None:
    """A `KnowledgeClient` of the running `kb serve`, or None (none running, or KB_NO_SERVER=1).

    The local server checks only that a signature is present (there are no IAM principals locally), so
    the requests carry a placeholder Authorization header rather than a signature by the caller's AWS ones.
    """
    if os.environ.get("KB_NO_SERVER") == "1":
        return None
    record = running_server(home=home)
    if record is None:
        return None
    from knowledge_client import KnowledgeClient, RetryPolicy

    # Unsigned, with a placeholder Authorization header: botocore's signer costs a fresh process more
    # (its import) than the whole warm answer.
    opener = urllib.request.build_opener(_LocalAuthorization())
    return KnowledgeClient(
        str(record["url"]), sign=False, opener=opener, timeout_s=60.0, retry=RetryPolicy(attempts=1)
    )


class _LocalAuthorization(urllib.request.BaseHandler):
    """Adds the Authorization header the local server requires on AWS_IAM routes (it checks presence only)."""

    def http_request(self, request: urllib.request.Request) -> urllib.request.Request:
        request.add_unredirected_header("Authorization", "local")
        return request
