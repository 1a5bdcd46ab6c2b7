"""The CloudFormation custom resource response: a PUT of the body to the pre-signed URL the event names."""

from __future__ import annotations

import urllib.request


def put_response(url: str, body: bytes) -> None:
    request = urllib.request.Request(url, data=body, method="PUT", headers={"Content-Type": ""})
    with urllib.request.urlopen(request, timeout=30) as response:
        response.read()
