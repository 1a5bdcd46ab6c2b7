"""Secrets Manager: the database credentials, cached for a few minutes and re-read on demand."""

from __future__ import annotations

import json
import threading
from typing import Any

from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from knowledge.errors import ConfigurationError, DatabaseUnavailableError

SECRET_MAX_AGE_S = 300


def secrets_client_config() -> Config:
    """Secrets Manager answers in milliseconds: a few seconds per attempt keeps a cold start inside any
    function's timeout, where botocore's defaults (60 s reads, retried) would not."""
    return Config(connect_timeout=2, read_timeout=3, retries={"mode": "standard", "total_max_attempts": 3})


class SecretReader:
    """JSON secrets through a Powertools provider (`SecretsProvider`), cached for SECRET_MAX_AGE_S.

    `invalidate(arn)` makes the next `read(arn)` fetch again: the database refused the cached password,
    so the secret has been rotated since.
    """

    def __init__(self, provider: Any) -> None:
        self._provider = provider
        self._stale: set[str] = set()
        self._lock = threading.Lock()

    def read(self, arn: str) -> dict[str, Any]:
        with self._lock:
            force = arn in self._stale
            self._stale.discard(arn)
        try:
            value = self._provider.get(arn, transform="json", max_age=SECRET_MAX_AGE_S, force_fetch=force)
        except (ClientError, BotoCoreError) as exc:
            raise DatabaseUnavailableError(f"cannot read the database secret {arn}: {exc}") from exc
        except Exception as exc:  # Powertools wraps fetch and transform failures in its own errors
            raise DatabaseUnavailableError(f"cannot read the database secret {arn}: {exc}") from exc
        if not isinstance(value, dict):
            raise ConfigurationError(f"the secret {arn} does not hold a JSON object")
        return value

    def invalidate(self, arn: str) -> None:
        with self._lock:
            self._stale.add(arn)


class SecretVersions:
    """The Secrets Manager calls a rotation makes on one secret (the four-step rotation protocol)."""

    def __init__(self, client: Any) -> None:
        self._client = client

    def stages(self, arn: str) -> dict[str, list[str]]:
        """version id -> its staging labels; refuses a secret that is not set up for rotation."""
        try:
            described = self._client.describe_secret(SecretId=arn)
        except ClientError as exc:
            raise ConfigurationError(f"cannot describe the secret {arn}: {exc}") from exc
        if not described.get("RotationEnabled"):
            raise ConfigurationError(f"the secret {arn} does not have rotation enabled")
        return {k: list(v) for k, v in described.get("VersionIdsToStages", {}).items()}

    def value(self, arn: str, *, stage: str, version: str | None = None) -> dict[str, Any] | None:
        """The JSON value of a version (by id, else by stage); None when there is none."""
        options: dict[str, str] = {"SecretId": arn, "VersionStage": stage}
        if version:
            options["VersionId"] = version
        try:
            raw = self._client.get_secret_value(**options)["SecretString"]
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "ResourceNotFoundException":
                return None
            raise DatabaseUnavailableError(f"cannot read the secret {arn}: {exc}") from exc
        value = json.loads(raw)
        if not isinstance(value, dict):
            raise ConfigurationError(f"the secret {arn} does not hold a JSON object")
        return value

    def new_password(self) -> str:
        # Letters and digits only: nothing a connection string or a shell would need to quote.
        return str(
            self._client.get_random_password(PasswordLength=40, ExcludePunctuation=True)["RandomPassword"]
        )

    def put_pending(self, arn: str, token: str, value: dict[str, Any]) -> None:
        self._client.put_secret_value(
            SecretId=arn,
            ClientRequestToken=token,
            SecretString=json.dumps(value),
            VersionStages=["AWSPENDING"],
        )

    def promote(self, arn: str, token: str, current: str | None) -> None:
        options: dict[str, str] = {"SecretId": arn, "VersionStage": "AWSCURRENT", "MoveToVersionId": token}
        if current:
            options["RemoveFromVersionId"] = current
        self._client.update_secret_version_stage(**options)
