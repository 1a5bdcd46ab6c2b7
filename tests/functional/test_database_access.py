"""Database access on the embedded PostgreSQL: concurrent migrations, the job roles' privileges, a password
rotation under running pools, and the timeouts of every database path."""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
import pytest
from psycopg import sql

from knowledge.adapters.postgres import documents, migrations
from knowledge.adapters.postgres.database import Database, SessionTimeouts
from knowledge.adapters.postgres.roles import set_role_password
from knowledge.adapters.postgres.search import search_by_vector
from knowledge.config import Settings
from knowledge.embedding.hashing import HashEmbedder
from knowledge.errors import ConfigurationError, DatabaseUnavailableError
from knowledge.model import Chunk
from knowledge.reranking import SentenceReranker
from knowledge.schema import Migration, available_migrations
from knowledge.schema.deploy import migrate_database
from knowledge.schema.rotation import rotate
from local_runtime.postgres import start_embedded_postgres

MODEL = "sentence-transformers/all-MiniLM-L6-v2"


def _unit(i: int, dim: int = 384) -> list[float]:
    vector = [0.0] * dim
    vector[i % dim] = 1.0
    return vector


def _doc(world: str = "w", key: str = "incoming/w/doc.md") -> documents.DocumentToStore:
    return documents.DocumentToStore(
        world_id=world,
        s3_key=key,
        title="Doc",
        media_type="text/markdown",
        content_sha256="a" * 64,
        size_bytes=10,
        embedding_model=MODEL,
        chunks=[Chunk(0, "H", "chunk", 0, 5, 1)],
        chunk_vectors=[_unit(0)],
    )


def _as(postgres: Any, dbname: str, role: str) -> Database:
    return Database(lambda: f"host={postgres.socket_dir} dbname={dbname} user={role}", max_size=1)


@pytest.fixture
def empty_database(postgres: Any, database_name: str) -> str:
    start_embedded_postgres(postgres.data_dir, database_name)
    return database_name


# ---------------------------------------------------------------- migrations
def test_two_concurrent_runs_apply_each_migration_once(postgres: Any, empty_database: str) -> None:
    runs: list[list[int]] = []
    barrier = threading.Barrier(2)

    def run() -> None:
        with psycopg.connect(postgres.conninfo(empty_database)) as conn:
            barrier.wait()
            runs.append(migrations.apply_migrations(conn, embedding_model=MODEL, embedding_dimension=384))

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    every = [m.version for m in available_migrations()]
    assert sorted(runs, key=len) == [[], every]
    with psycopg.connect(postgres.conninfo(empty_database)) as conn:
        rows = conn.execute("SELECT version FROM schema_migrations ORDER BY version").fetchall()
    assert [r[0] for r in rows] == every


def test_a_failing_migration_keeps_the_earlier_ones_and_nothing_of_its_own(
    postgres: Any, empty_database: str
) -> None:
    shipped = available_migrations()
    broken = Migration(shipped[-1].version + 1, "broken", "CREATE TABLE half_done (x int); SELECT 1/0;")
    with psycopg.connect(postgres.conninfo(empty_database)) as conn:
        with pytest.raises(psycopg.errors.DivisionByZero):
            migrations.apply_migrations(
                conn, embedding_model=MODEL, embedding_dimension=384, migrations=[*shipped, broken]
            )
        versions = [r[0] for r in conn.execute("SELECT version FROM schema_migrations ORDER BY 1")]
        assert versions == [m.version for m in shipped]
        assert conn.execute("SELECT to_regclass('half_done')").fetchone() == (None,)
        # The runner's lock went with the failure: the next run proceeds.
        assert migrations.apply_migrations(conn, embedding_model=MODEL, embedding_dimension=384) == []


def test_a_slow_migration_statement_fails_with_a_domain_error(
    postgres: Any, empty_database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(migrations, "MIGRATION_STATEMENT_TIMEOUT_S", 0.2)
    slow = Migration(9999, "slow", "SELECT pg_sleep(30);")
    with psycopg.connect(postgres.conninfo(empty_database)) as conn:
        with pytest.raises(DatabaseUnavailableError, match="timeout"):
            migrations.apply_migrations(
                conn,
                embedding_model=MODEL,
                embedding_dimension=384,
                migrations=[*available_migrations(), slow],
            )
        assert conn.execute("SELECT max(version) FROM schema_migrations").fetchone() == (
            available_migrations()[-1].version,
        )


def test_another_model_is_refused_before_any_migration_runs(postgres: Any, empty_database: str) -> None:
    shipped = available_migrations()
    with psycopg.connect(postgres.conninfo(empty_database)) as conn:
        migrations.apply_migrations(
            conn, embedding_model=MODEL, embedding_dimension=384, migrations=shipped[:1]
        )
        with pytest.raises(ConfigurationError, match="1024"):
            migrations.apply_migrations(conn, embedding_model="titan", embedding_dimension=1024)
        versions = [r[0] for r in conn.execute("SELECT version FROM schema_migrations")]
    assert versions == [shipped[0].version]


# ---------------------------------------------------------------- job roles
def test_each_job_role_writes_only_its_own_tables(postgres: Any, database: Any, database_name: str) -> None:
    reader = _as(postgres, database_name, "kb_reader")
    ingestion = _as(postgres, database_name, "kb_ingestion")
    events = _as(postgres, database_name, "kb_story_events")
    try:
        # Ingestion stores a document of a new world: no DDL, its chunks go to the shared partition.
        with ingestion.transaction() as conn:
            assert documents.store_document(conn, _doc(world="fresh", key="incoming/fresh/a.md")).status
        with events.transaction() as conn:
            conn.execute(
                "INSERT INTO story_events (event_id, world_id, occurred_at, kind, summary)"
                " VALUES ('e1', 'fresh', now(), 'beat', 'x')"
            )
        with reader.transaction() as conn:
            assert conn.execute("SELECT count(*) FROM document_chunks").fetchone() == (1,)
            assert conn.execute("SELECT count(*) FROM story_events").fetchone() == (1,)
        # The API's searches, through the shared partition's functions (migration 0014) as the reader.
        query = HashEmbedder(384).embed(["anything"])[0]
        for words in (None, "anything"):

            def searched(conn: Any, words: str | None = words) -> list[Any]:
                return search_by_vector(conn, query, world_id="fresh", keywords=words)

            assert len(reader.read(searched)) == 1

        refused = [
            (reader, "INSERT INTO worlds (world_id, name) VALUES ('x', 'X')"),
            (reader, "DELETE FROM story_events"),
            (reader, "UPDATE narrative_documents SET title = 'y'"),
            (ingestion, "DELETE FROM story_events"),
            (ingestion, "UPDATE kb_settings SET embedding_model = 'other'"),
            (events, "DELETE FROM narrative_documents"),
            # PUT /worlds creates worlds and sets parents through this role (migration 0009); nothing more.
            (events, "DELETE FROM worlds"),
            (events, "UPDATE worlds SET created_at = now()"),
            (ingestion, "CREATE TABLE mine (x int)"),
            (events, "DROP TABLE document_chunks"),
            (reader, "TRUNCATE worlds"),
        ]
        for role_db, statement in refused:
            with pytest.raises(psycopg.errors.InsufficientPrivilege), role_db.transaction() as conn:
                conn.execute(statement)
    finally:
        for db in (reader, ingestion, events):
            db.close()


def test_only_job_roles_get_a_password_from_a_secret(database: Any) -> None:
    with database.schema_connection() as conn:
        with pytest.raises(ConfigurationError, match="not a job role"):
            set_role_password(conn, "postgres", "takeover")
        with pytest.raises(ConfigurationError, match="no password"):
            set_role_password(conn, "kb_reader", "")


# ---------------------------------------------------------------- rotation
@contextmanager
def _password_authentication(postgres: Any, dbname: str) -> Iterator[None]:
    """Connections to `dbname` must authenticate with a password (the embedded server trusts the rest)."""
    hba = postgres.data_dir / "pg_hba.conf"
    original = hba.read_text()
    hba.write_text(f"local {dbname} all scram-sha-256\n" + original)
    with psycopg.connect(postgres.conninfo("postgres"), autocommit=True) as conn:
        conn.execute("SELECT pg_reload_conf()")
    try:
        yield
    finally:
        hba.write_text(original)
        with psycopg.connect(postgres.conninfo("postgres"), autocommit=True) as conn:
            conn.execute("SELECT pg_reload_conf()")


@pytest.fixture
def secrets_manager(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    import boto3
    from moto import mock_aws

    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(name, value)
    with mock_aws():
        yield boto3.client("secretsmanager", region_name="us-east-1")


def _services(postgres: Any, dbname: str, secret_arn: str) -> Any:
    from knowledge.services import Services

    env = {
        "DB_SECRET_ARN": secret_arn,
        "DB_HOST": postgres.socket_dir,
        "DB_NAME": dbname,
        "DB_SSLMODE": "disable",
        "DB_STATEMENT_TIMEOUT_S": "5",
    }
    return Services(Settings.from_env(env))


def _terminate(postgres: Any, role: str) -> None:
    with psycopg.connect(postgres.conninfo("postgres"), autocommit=True) as conn:
        conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s", (role,))


def test_a_rotated_password_is_read_again_when_a_connection_is_opened(
    postgres: Any, database: Any, database_name: str, secrets_manager: Any
) -> None:
    arn = secrets_manager.create_secret(
        Name="reader", SecretString=json.dumps({"username": "kb_reader", "password": "first-password"})
    )["ARN"]
    with database.schema_connection() as conn:
        set_role_password(conn, "kb_reader", "first-password")
    services = _services(postgres, database_name, arn)
    whoami = "SELECT current_user"
    with _password_authentication(postgres, database_name):
        try:
            assert services.database.read(lambda c: c.execute(whoami).fetchone()) == ("kb_reader",)
            # The rotation: a new password on the server and in the secret; the cached secret is now stale.
            # (Roles are the cluster's: set from the maintenance database, which still trusts the superuser.)
            with psycopg.connect(postgres.conninfo("postgres"), autocommit=True) as conn:
                set_role_password(conn, "kb_reader", "second-password")
            secrets_manager.put_secret_value(
                SecretId=arn,
                SecretString=json.dumps({"username": "kb_reader", "password": "second-password"}),
            )
            _terminate(postgres, "kb_reader")  # a failover, an idle timeout: every connection is new again
            assert services.database.read(lambda c: c.execute(whoami).fetchone()) == ("kb_reader",)
            with services.database.transaction() as conn:
                assert conn.execute(whoami).fetchone() == ("kb_reader",)
            with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
                psycopg.connect(
                    f"host={postgres.socket_dir} dbname={database_name} user=kb_reader password=first-password"
                )
        finally:
            services.database.close()


def test_the_rotation_function_sets_tests_and_promotes_a_new_password(
    postgres: Any, database: Any, database_name: str, secrets_manager: Any
) -> None:
    from knowledge.adapters.aws.secrets import SecretVersions

    arn = secrets_manager.create_secret(
        Name="events", SecretString=json.dumps({"username": "kb_story_events", "password": "old-password"})
    )["ARN"]
    with database.schema_connection() as conn:
        set_role_password(conn, "kb_story_events", "old-password")
    secrets_manager.rotate_secret(
        SecretId=arn, RotationRules={"AutomaticallyAfterDays": 30}, RotateImmediately=False
    )
    services = _services(postgres, database_name, arn)
    token = "r" * 36

    class RotationStarted(SecretVersions):
        """Secrets Manager labels the new version AWSPENDING before its first step; moto cannot."""

        def stages(self, arn: str) -> dict[str, list[str]]:
            stages = super().stages(arn)
            stages.setdefault(token, ["AWSPENDING"])
            return stages

    versions = RotationStarted(secrets_manager)
    admin = _AdminDatabase(postgres, database_name)
    with _password_authentication(postgres, database_name):
        try:
            for step in (
                "createSecret",
                "setSecret",
                "testSecret",
                "testSecret",
                "finishSecret",
                "finishSecret",
            ):
                event = {"SecretId": arn, "ClientRequestToken": token, "Step": step}
                assert rotate(event, versions=versions, admin=admin, connect_as=services.database_as) == step
            current = secrets_manager.get_secret_value(SecretId=arn, VersionStage="AWSCURRENT")
            rotated = json.loads(current["SecretString"])
            assert rotated["username"] == "kb_story_events" and rotated["password"] != "old-password"
            with psycopg.connect(
                f"host={postgres.socket_dir} dbname={database_name} user=kb_story_events"
                f" password={rotated['password']}"
            ) as conn:
                assert conn.execute("SELECT current_user").fetchone() == ("kb_story_events",)
            with pytest.raises(ConfigurationError, match="unknown rotation step"):
                rotate(
                    {**event, "Step": "dropTable"},
                    versions=versions,
                    admin=admin,
                    connect_as=services.database_as,
                )
        finally:
            admin.close()


class _AdminDatabase(Database):
    """The master user under password authentication: the embedded superuser, given a password."""

    def __init__(self, postgres: Any, dbname: str) -> None:
        password = "admin-" + os.urandom(6).hex()
        with psycopg.connect(postgres.conninfo("postgres"), autocommit=True) as conn:
            conn.execute(sql.SQL("ALTER ROLE postgres PASSWORD {}").format(sql.Literal(password)))
        super().__init__(lambda: f"{postgres.conninfo(dbname)} password={password}", max_size=1)


def test_a_rotation_event_that_does_not_fit_the_secret_is_refused(
    database: Any, secrets_manager: Any
) -> None:
    from knowledge.adapters.aws.secrets import SecretVersions

    plain = secrets_manager.create_secret(Name="plain", SecretString=json.dumps({"username": "kb_reader"}))[
        "ARN"
    ]
    rotating = secrets_manager.create_secret(
        Name="rotating", SecretString=json.dumps({"username": "kb_reader"})
    )
    secrets_manager.rotate_secret(
        SecretId=rotating["ARN"], RotationRules={"AutomaticallyAfterDays": 30}, RotateImmediately=False
    )
    current = next(
        v
        for v, s in secrets_manager.describe_secret(SecretId=rotating["ARN"])["VersionIdsToStages"].items()
        if "AWSCURRENT" in s
    )
    previous = next(
        v
        for v, s in secrets_manager.describe_secret(SecretId=rotating["ARN"])["VersionIdsToStages"].items()
        if "AWSCURRENT" not in s
    )
    versions = SecretVersions(secrets_manager)
    cases = [
        (plain, "t" * 36, "does not have rotation enabled"),
        (rotating["ARN"], "u" * 36, "not part of its rotation"),
        (rotating["ARN"], previous, "not pending rotation"),
    ]
    for arn, token, reason in cases:
        event = {"SecretId": arn, "ClientRequestToken": token, "Step": "setSecret"}
        with pytest.raises(ConfigurationError, match=reason):
            rotate(event, versions=versions, admin=database, connect_as=lambda secret: database)
    # A repeated event for the version already promoted does nothing.
    done = {"SecretId": rotating["ARN"], "ClientRequestToken": current, "Step": "finishSecret"}
    assert (
        rotate(done, versions=versions, admin=database, connect_as=lambda secret: database) == "finishSecret"
    )


def test_the_migrator_gives_each_job_role_its_password(
    postgres: Any, database: Any, database_name: str, secrets_manager: Any
) -> None:
    arns = [
        secrets_manager.create_secret(
            Name=role, SecretString=json.dumps({"username": role, "password": f"{role}-pw"})
        )["ARN"]
        for role in ("kb_reader", "kb_ingestion")
    ]
    services = _services(postgres, database_name, arns[0])
    from knowledge.schema import migrations_digest

    result = migrate_database(
        {"MigrationsDigest": migrations_digest(), "EmbeddingModelId": MODEL, "EmbeddingDimension": "384"},
        database=database,
        read_secret=services.secrets.read,
        role_secret_arns=arns,
        default_model=MODEL,
        default_dimension=384,
    )
    assert result["Roles"] == "kb_reader,kb_ingestion" and result["Applied"] == ""
    with _password_authentication(postgres, database_name):
        for role in ("kb_reader", "kb_ingestion"):
            with psycopg.connect(
                f"{postgres.conninfo(database_name)} user={role} password={role}-pw"
            ) as conn:
                assert conn.execute("SELECT current_user").fetchone() == (role,)
    with pytest.raises(ConfigurationError, match="MigrationsDigest"):
        migrate_database(
            {"MigrationsVersion": "0001"},
            database=database,
            read_secret=services.secrets.read,
            role_secret_arns=arns,
            default_model=MODEL,
            default_dimension=384,
        )


# ---------------------------------------------------------------- timeouts
@contextmanager
def _table_locked(database: Any, table: str) -> Iterator[None]:
    """Another session holds `table` exclusively (a migration's DDL, say) until the block ends."""
    with database.schema_connection() as conn:
        conn.execute(f"LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE")
        try:
            yield
        finally:
            conn.rollback()


def test_every_pool_session_has_the_configured_timeouts(
    postgres: Any, database: Any, database_name: str
) -> None:
    db = Database(
        lambda: postgres.conninfo(database_name),
        timeouts=SessionTimeouts(statement_s=1.5, lock_s=0.5, idle_in_transaction_s=7),
    )
    query = (
        "SELECT current_setting('statement_timeout'), current_setting('lock_timeout'),"
        " current_setting('idle_in_transaction_session_timeout')"
    )
    try:
        expected = ("1500ms", "500ms", "7s")
        assert db.read(lambda c: c.execute(query).fetchone()) == expected
        with db.transaction() as conn:
            assert conn.execute(query).fetchone() == expected
    finally:
        db.close()


def test_a_slow_statement_fails_with_a_domain_error_on_both_pools(
    postgres: Any, database: Any, database_name: str
) -> None:
    db = Database(lambda: postgres.conninfo(database_name), timeouts=SessionTimeouts(statement_s=0.2))
    try:
        with pytest.raises(DatabaseUnavailableError, match="time limit"), db.transaction() as conn:
            conn.execute("SELECT pg_sleep(30)")
        with pytest.raises(DatabaseUnavailableError, match="time limit"):
            db.read(lambda c: c.execute("SELECT pg_sleep(30)"))
        # A lock wait ends at lock_timeout (here shorter than a statement may run), with that said.
        waiting = Database(lambda: postgres.conninfo(database_name), timeouts=SessionTimeouts(5, lock_s=0.2))
        with (
            _table_locked(database, "story_events"),
            pytest.raises(DatabaseUnavailableError, match="lock was not granted"),
            waiting.transaction() as conn,
        ):
            conn.execute("INSERT INTO worlds (world_id, name) VALUES ('w', 'W')")
            conn.execute("SELECT count(*) FROM story_events")
        # Nothing of the failed transaction stayed, and the pools still work.
        with waiting.transaction() as conn:
            assert conn.execute("SELECT count(*) FROM worlds").fetchone() == (0,)
        assert db.read(lambda c: c.execute("SELECT 1").fetchone()) == (1,)
    finally:
        db.close()
        waiting.close()


def test_a_story_event_store_that_waits_too_long_fails_without_storing(
    postgres: Any, database: Any, database_name: str
) -> None:
    from knowledge.story_events import processing
    from tests.functional.test_story_events_store import event

    with database.transaction() as conn:
        conn.execute("INSERT INTO worlds (world_id, name) VALUES ('emberfall', 'Emberfall')")
    db = Database(lambda: postgres.conninfo(database_name), timeouts=SessionTimeouts(statement_s=0.3))
    try:
        with _table_locked(database, "story_events"), pytest.raises(DatabaseUnavailableError, match="time"):
            processing.store(event("e-slow"), database=db, embedder=HashEmbedder())
        with database.transaction() as conn:
            assert conn.execute("SELECT count(*) FROM story_events").fetchone() == (0,)
    finally:
        db.close()


def test_an_api_query_behind_a_lock_answers_503_instead_of_hanging(
    postgres: Any, database: Any, database_name: str
) -> None:
    from knowledge.queries import api
    from local_runtime.api_gateway import proxy_event

    with database.transaction() as conn:
        documents.store_document(conn, _doc(world="emberfall", key="incoming/emberfall/a.md"))

    class Services:
        database = Database(
            lambda: postgres.conninfo(database_name), timeouts=SessionTimeouts(statement_s=0.3)
        )
        embedder = HashEmbedder(384)
        reranker = SentenceReranker(embedder)

    body = json.dumps({"query": "chunk", "world_id": "emberfall", "k": 1})
    request = proxy_event("POST", "/search", body=body, headers={"Content-Type": "application/json"})
    try:
        assert api.handle(api.build_app(Services()), request, None)["statusCode"] == 200
        with _table_locked(database, "document_chunks"):
            response = api.handle(api.build_app(Services()), request, None)
        assert response["statusCode"] == 503
        assert json.loads(response["body"])["code"] == "database_unavailable"
    finally:
        Services.database.close()
