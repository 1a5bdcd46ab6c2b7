"""CloudFormation custom resource protocol: run an action, always PUT a response to the pre-signed URL.

A custom resource that never answers blocks a stack for an hour; every exit path here answers.
"""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Callable
from typing import Any


def response_body(
    event: dict[str, Any], *, status: str, reason: str, physical_id: str, data: dict[str, Any]
) -> bytes:
    return json.dumps(
        {
            "Status": status,
            "Reason": reason[:3500],
            "PhysicalResourceId": physical_id,
            "StackId": event["StackId"],
            "RequestId": event["RequestId"],
            "LogicalResourceId": event["LogicalResourceId"],
            "Data": data,
        }
    ).encode()


def run_custom_resource(
    event: dict[str, Any],
    action: Callable[[dict[str, Any]], dict[str, Any]],
    *,
    physical_id: str,
    send: Callable[[str, bytes], None] | None = None,
) -> dict[str, Any]:
    """Call action(properties) on Create/Update (Delete is a no-op: data outlives the stack)."""
    send = send or _put
    try:
        data = action(event.get("ResourceProperties", {})) if event["RequestType"] != "Delete" else {}
        body = response_body(event, status="SUCCESS", reason="ok", physical_id=physical_id, data=data)
    except Exception as exc:
        body = response_body(
            event, status="FAILED", reason=f"{type(exc).__name__}: {exc}", physical_id=physical_id, data={}
        )
    send(event["ResponseURL"], body)
    return json.loads(body)


def _put(url: str, body: bytes) -> None:
    request = urllib.request.Request(url, data=body, method="PUT", headers={"Content-Type": ""})
    with urllib.request.urlopen(request, timeout=30) as response:
        response.read()
