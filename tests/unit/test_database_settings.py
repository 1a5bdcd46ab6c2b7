"""Connection settings of the deployed functions: TLS verification, timeouts, the Bedrock client's budget."""

from __future__ import annotations

from pathlib import Path

import pytest
from psycopg.conninfo import conninfo_to_dict

from knowledge.adapters.aws.bedrock import bedrock_client_config, worst_case_seconds
from knowledge.adapters.postgres.database import SessionTimeouts, conninfo_from_secret
from knowledge.config import RDS_CA_BUNDLE, Settings
from knowledge.errors import ConfigurationError

SECRET = {"username": "kb_reader", "password": "pw"}


def test_deployed_connections_verify_the_server_certificate(tmp_path: Path) -> None:
    settings = Settings.from_env({})
    assert (settings.db_sslmode, settings.db_sslrootcert) == ("verify-full", RDS_CA_BUNDLE)
    bundle = tmp_path / "ca.pem"
    bundle.write_text("-----BEGIN CERTIFICATE-----\n")
    parts = conninfo_to_dict(conninfo_from_secret(SECRET, host="db.example", sslrootcert=str(bundle)))
    assert parts["sslmode"] == "verify-full" and parts["sslrootcert"] == str(bundle)
    assert parts["user"] == "kb_reader" and int(str(parts["connect_timeout"])) <= 5
    # Through RDS Proxy (certificates from ACM): the system trust store, still verified.
    proxied = conninfo_to_dict(conninfo_from_secret(SECRET, host="proxy.example", sslrootcert="system"))
    assert (proxied["sslmode"], proxied["sslrootcert"]) == ("verify-full", "system")


def test_a_missing_ca_bundle_is_refused_rather_than_unverified(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="rds-ca-bundle"):
        conninfo_from_secret(SECRET, host="db.example", sslrootcert=str(tmp_path / "absent.pem"))
    with pytest.raises(ConfigurationError, match="DB_SSLMODE"):
        Settings.from_env({"DB_SSLMODE": "allow"})
    # The local runtime's embedded server has no TLS: its setting names that explicitly.
    local = conninfo_to_dict(conninfo_from_secret(SECRET, host="/tmp/sock", sslmode="disable"))
    assert local["sslmode"] == "disable" and "sslrootcert" not in local


def test_timeouts_are_read_once_and_must_be_positive() -> None:
    settings = Settings.from_env({"DB_STATEMENT_TIMEOUT_S": "4", "EMBEDDING_TIMEOUT_S": "7.5"})
    assert (settings.db_statement_timeout_s, settings.embedding_timeout_s) == (4.0, 7.5)
    for bad in ("0", "-1", "soon"):
        with pytest.raises(ConfigurationError, match="DB_STATEMENT_TIMEOUT_S"):
            Settings.from_env({"DB_STATEMENT_TIMEOUT_S": bad})
    assert SessionTimeouts(statement_s=2).sql() == (
        b"SELECT set_config('statement_timeout', '2000', false), set_config('lock_timeout', '2000', false),"
        b" set_config('idle_in_transaction_session_timeout', '60000', false)"
    )


@pytest.mark.parametrize("budget", [3, 6, 8, 10, 15, 20, 30, 60])
def test_a_bedrock_call_with_its_retries_fits_its_budget(budget: float) -> None:
    config = bedrock_client_config(timeout_s=budget)
    assert worst_case_seconds(config) <= budget + 1e-9
    assert config.retries["mode"] == "standard"  # type: ignore[attr-defined]  # adaptive mode's rate limiter may sleep without bound
    assert config.read_timeout >= 2  # type: ignore[attr-defined]


def test_botocores_defaults_would_not_fit_a_28_second_function() -> None:
    from botocore.config import Config

    assert worst_case_seconds(Config(retries={"mode": "standard", "total_max_attempts": 3})) > 28
    with pytest.raises(ConfigurationError):
        bedrock_client_config(timeout_s=0)


class _Provider:
    def __init__(self, *answers: object) -> None:
        self.answers = list(answers)
        self.calls: list[bool] = []

    def get(self, name: str, *, transform: str, max_age: int, force_fetch: bool) -> object:
        self.calls.append(force_fetch)
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer


def test_a_refused_password_makes_the_next_read_fetch_the_secret_again() -> None:
    from knowledge.adapters.aws.secrets import SecretReader

    provider = _Provider(SECRET, SECRET, SECRET)
    reader = SecretReader(provider)
    reader.read("arn:db")
    reader.invalidate("arn:db")
    reader.read("arn:db")
    reader.read("arn:db")
    assert provider.calls == [False, True, False]


def test_an_unreadable_secret_is_a_clear_error() -> None:
    from botocore.exceptions import EndpointConnectionError

    from knowledge.adapters.aws.secrets import SecretReader
    from knowledge.errors import DatabaseUnavailableError

    with pytest.raises(DatabaseUnavailableError, match="arn:db"):
        SecretReader(_Provider(EndpointConnectionError(endpoint_url="https://secretsmanager"))).read("arn:db")
    with pytest.raises(ConfigurationError, match="JSON object"):
        SecretReader(_Provider(["not", "an", "object"])).read("arn:db")
