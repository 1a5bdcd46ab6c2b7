"""The database's wiring in template.yaml: the migration trigger, job roles' secrets, outbound timeouts."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

from knowledge.adapters.aws.bedrock import bedrock_client_config, worst_case_seconds
from knowledge.adapters.postgres.migrations import MIGRATION_STATEMENT_TIMEOUT_S, RUNNER_LOCK_TIMEOUT_S
from knowledge.config import Settings
from knowledge.errors import ConfigurationError
from knowledge.schema import Migration, available_migrations, migrations_digest
from knowledge.schema.deploy import check_digest
from local_runtime.paths import REPO_ROOT
from local_runtime.template import load_sam_template

EMBEDDER_WORKERS = 8  # TitanEmbedder's default thread pool: a batch runs in ceil(batch / workers) rounds


@pytest.fixture(scope="module")
def resources() -> dict[str, Any]:
    return dict(load_sam_template()["Resources"])


def _environment(resource: dict[str, Any]) -> dict[str, Any]:
    return dict(resource["Properties"].get("Environment", {}).get("Variables", {}))


def test_the_migration_trigger_is_the_digest_of_the_migration_files(resources: dict[str, Any]) -> None:
    properties = resources["DatabaseMigration"]["Properties"]
    assert "MigrationsVersion" not in properties
    assert properties["MigrationsDigest"] == migrations_digest(), (
        f"set DatabaseMigration's MigrationsDigest in template.yaml to {migrations_digest()}"
    )
    event = json.loads((REPO_ROOT / "events" / "migrate-database-create.json").read_text())
    assert event["ResourceProperties"]["MigrationsDigest"] == migrations_digest()
    assert check_digest(properties) == migrations_digest()


def test_a_new_or_edited_migration_changes_the_trigger() -> None:
    shipped = available_migrations()
    newest = shipped[-1]
    added = [*shipped, Migration(newest.version + 1, "another_step", "SELECT 1;\n")]
    edited = [*shipped[:-1], Migration(newest.version, newest.name, newest.sql + "\n-- a comment\n")]
    renamed = [*shipped[:-1], Migration(newest.version, newest.name + "_x", newest.sql)]
    digests = {migrations_digest(m) for m in (shipped, added, edited, renamed)}
    assert len(digests) == 4
    with pytest.raises(ConfigurationError, match="MigrationsDigest"):
        check_digest({"MigrationsDigest": migrations_digest(added)})
    with pytest.raises(ConfigurationError, match="missing"):
        check_digest({"MigrationsVersion": "0001"})


def test_the_digest_covers_every_migration_file_in_the_package() -> None:
    folder = Path(REPO_ROOT / "layers/knowledge/knowledge/schema/migrations")
    assert sorted(p.name for p in folder.glob("*.sql")) == [m.file_name for m in available_migrations()]


def test_each_database_function_connects_as_its_jobs_role(resources: dict[str, Any]) -> None:
    jobs = {
        "KnowledgeApiFunction": "Reader",
        "ValidateDocumentFunction": "Ingestion",
        "StoreDocumentFunction": "Ingestion",
        "QuarantineDocumentFunction": "Ingestion",
        "DeleteDocumentFunction": "Ingestion",
        "ProcessStoryEventsFunction": "StoryEvents",
    }
    for name, job in jobs.items():
        secret = _environment(resources[name])["DB_SECRET_ARN"]
        assert secret == {
            "Fn::If": [
                "CreateDatabase",
                {"Ref": f"Database{job}Secret"},
                {"Ref": "ExistingDatabaseSecretArn"},
            ]
        }, name
        policy = resources[f"Database{job}SecretReadPolicy"]["Properties"]
        assert {"Ref": f"{name}Role"} in policy["Roles"], name
    mappings = load_sam_template()["Mappings"]["DatabaseRoles"]
    for job, role in (
        ("Reader", "kb_reader"),
        ("Ingestion", "kb_ingestion"),
        ("StoryEvents", "kb_story_events"),
    ):
        assert mappings[job]["Role"] == role
        secret = resources[f"Database{job}Secret"]
        assert secret["Condition"] == "CreateDatabase"
        generated = secret["Properties"]["GenerateSecretString"]
        assert generated["GenerateStringKey"] == "password" and generated["PasswordLength"] >= 32
        rotation = resources[f"Database{job}SecretRotation"]
        assert rotation["Type"] == "AWS::SecretsManager::RotationSchedule"
        assert rotation["Properties"]["SecretId"] == {"Ref": f"Database{job}Secret"}
        assert rotation["Properties"]["RotationLambdaARN"] == {"Ref": "RotateDatabaseSecretFunction.Alias"}
        assert "DatabaseMigration" in rotation["DependsOn"]
    # Only the migrator (and the rotation function) reads the master secret.
    master = resources["DatabaseSecretReadPolicy"]["Properties"]
    assert master["Roles"] == [{"Ref": "MigrateDatabaseFunctionRole"}]
    assert "DB_ROLE_SECRET_ARNS" in _environment(resources["MigrateDatabaseFunction"])


def _timeout(resources: dict[str, Any], name: str) -> float:
    globals_ = load_sam_template()["Globals"]["Function"]
    return float(resources[name]["Properties"].get("Timeout", globals_["Timeout"]))


def test_outbound_calls_and_statements_end_before_their_function(resources: dict[str, Any]) -> None:
    parameters = load_sam_template()["Parameters"]
    checked = 0
    for name, resource in resources.items():
        if resource["Type"] != "AWS::Serverless::Function":
            continue
        env = _environment(resource)
        if "DB_SECRET_ARN" not in env and env.get("EMBEDDING_PROVIDER") != "bedrock":
            continue
        settings = Settings.from_env({k: str(v) for k, v in env.items() if isinstance(v, str | int | float)})
        timeout = _timeout(resources, name)
        budget = 0.0
        if "EMBEDDING_TIMEOUT_S" in env:
            config = bedrock_client_config(timeout_s=settings.embedding_timeout_s)
            assert worst_case_seconds(config) <= settings.embedding_timeout_s + 1e-9, name
            rounds = 1
            if name == "EmbedBatchFunction":  # one batch of chunks, EMBEDDER_WORKERS requests at a time
                rounds = math.ceil(int(parameters["EmbedBatchSize"]["Default"]) / EMBEDDER_WORKERS)
            budget += rounds * settings.embedding_timeout_s
        if "DB_SECRET_ARN" in env and name != "MigrateDatabaseFunction":
            assert "DB_STATEMENT_TIMEOUT_S" in env, f"{name} has no statement timeout of its own"
            budget += settings.db_statement_timeout_s
        assert budget < timeout, f"{name}: {budget} s of outbound calls in a {timeout} s function"
        checked += 1
    assert checked >= 8
    # The functions that call Bedrock each bound it below botocore's 60 s default.
    for name in ("KnowledgeApiFunction", "ProcessStoryEventsFunction", "EmbedBatchFunction"):
        assert "EMBEDDING_TIMEOUT_S" in _environment(resources[name]), name
    # Migrations: longer statements than any function, still inside the migrator's timeout.
    migrator = _timeout(resources, "MigrateDatabaseFunction")
    assert migrator > MIGRATION_STATEMENT_TIMEOUT_S and migrator > RUNNER_LOCK_TIMEOUT_S
    assert (
        max(
            float(_environment(r).get("DB_STATEMENT_TIMEOUT_S", 0))
            for name, r in resources.items()
            # The re-embedding switch builds the new HNSW graphs: migration-sized work in its own 15 minutes.
            if r["Type"] == "AWS::Serverless::Function" and name != "ManageEmbeddingGenerationFunction"
        )
        < MIGRATION_STATEMENT_TIMEOUT_S
    )
