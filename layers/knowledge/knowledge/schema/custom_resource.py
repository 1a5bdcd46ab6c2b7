"""CloudFormation custom resource protocol: run an action, always PUT a response to the pre-signed URL.

A custom resource that never answers blocks a stack for an hour; every exit path here answers.
"""

from __future__ import annotations

import json
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
    send: Callable[[str, bytes], None],
) -> dict[str, Any]:
    """Call action(properties) on Create/Update (Delete is a no-op: data outlives the stack); `send` PUTs
    the response body to the pre-signed URL (`knowledge.adapters.aws.cloudformation.put_response`)."""
    try:
        data = action(event.get("ResourceProperties", {})) if event["RequestType"] != "Delete" else {}
        body = response_body(event, status="SUCCESS", reason="ok", physical_id=physical_id, data=data)
    except Exception as exc:
        body = response_body(
            event, status="FAILED", reason=f"{type(exc).__name__}: {exc}", physical_id=physical_id, data={}
        )
    send(event["ResponseURL"], body)
    return json.loads(body)
