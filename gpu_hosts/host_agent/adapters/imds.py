"""IMDSv2: a session token first (PUT), then the instance id and the Spot interruption notice."""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from typing import Any

from host_agent.errors import InstanceMetadataError

_TOKEN_TTL_S = 21600


class InstanceMetadata:
    def __init__(self, endpoint: str = "http://169.254.169.254", timeout_s: float = 2.0) -> None:
        self._endpoint, self._timeout_s = endpoint.rstrip("/"), timeout_s
        self._token: str | None = None
        self._token_expires = 0.0
        self._lock = threading.Lock()
        # The metadata service is link-local: never through a proxy the environment may name.
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def _token_value(self) -> str:
        with self._lock:
            if self._token is None or time.monotonic() >= self._token_expires:
                request = urllib.request.Request(
                    f"{self._endpoint}/latest/api/token",
                    method="PUT",
                    headers={"X-aws-ec2-metadata-token-ttl-seconds": str(_TOKEN_TTL_S)},
                )
                try:
                    with self._opener.open(request, timeout=self._timeout_s) as response:
                        self._token = response.read().decode()
                except (urllib.error.URLError, OSError) as exc:
                    raise InstanceMetadataError(f"IMDSv2 token: {exc}") from exc
                self._token_expires = time.monotonic() + _TOKEN_TTL_S - 60
            return self._token

    def _get(self, path: str) -> str | None:
        """The document at path, None on 404 (IMDS' answer for "no such notice")."""
        for attempt in (1, 2):
            request = urllib.request.Request(
                f"{self._endpoint}/latest/meta-data/{path}",
                headers={"X-aws-ec2-metadata-token": self._token_value()},
            )
            try:
                with self._opener.open(request, timeout=self._timeout_s) as response:
                    return str(response.read().decode())
            except urllib.error.HTTPError as exc:
                if exc.code == 404:
                    return None
                if exc.code == 401 and attempt == 1:
                    with self._lock:
                        self._token = None  # expired or rotated: fetch a new one once
                    continue
                raise InstanceMetadataError(f"IMDSv2 {path}: HTTP {exc.code}") from exc
            except (urllib.error.URLError, OSError) as exc:
                raise InstanceMetadataError(f"IMDSv2 {path}: {exc}") from exc
        raise InstanceMetadataError(f"IMDSv2 {path}: token refused")

    def instance_id(self) -> str:
        value = self._get("instance-id")
        if not value:
            raise InstanceMetadataError("IMDSv2 gave no instance-id")
        return value

    def instance_type(self) -> str | None:
        """The EC2 instance type (g5.xlarge, ...); None when IMDS does not say."""
        return self._get("instance-type") or None

    def purchase_option(self) -> str | None:
        """ "Spot" or "OnDemand" (IMDS `instance-life-cycle`: spot, on-demand, scheduled); None when unknown."""
        life_cycle = self._get("instance-life-cycle")
        if not life_cycle:
            return None
        return "Spot" if life_cycle.strip() == "spot" else "OnDemand"

    def spot_instance_action(self) -> dict[str, Any] | None:
        """{"action": "terminate"|"stop"|"hibernate", "time": ISO 8601} once a notice is out, else None."""
        text = self._get("spot/instance-action")
        if text is None:
            return None
        try:
            notice = json.loads(text)
        except ValueError:
            return {"action": "unknown", "raw": text}
        return notice if isinstance(notice, dict) else {"action": "unknown", "raw": text}
