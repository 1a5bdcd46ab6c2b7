"""An upload with personal data and secrets in every field it stores, through the deployed workflow on the
embedded PostgreSQL: no table holds any of it, and the DocumentIngested notification neither."""

from __future__ import annotations

import json

from tests.functional.conftest import Workflow
from tests.unit.test_pii_stored_fields import (
    KEY_BODY,
    PEM,
    PLANTED,
    leaks,
    planted_front_matter,
    planted_text,
)

KEY = "incoming/emberfall/contacts.md"


def document() -> bytes:
    front = planted_front_matter(db_password="hunter-two")
    body = (
        f"# {planted_text('Heading')}\n\nThe Court met at dusk in 1247. {planted_text('Body')}\n\n"
        f"## Keys\n\n```\n{PEM}\n```\n\nThe vault code 4421 9983 1207 opens the Kiln.\n"
    )
    return f"---\n{json.dumps(front)}\n---\n{body}".encode()


def test_no_table_and_no_notification_holds_planted_personal_data(workflow: Workflow) -> None:
    (result,) = workflow.upload(KEY, document())

    assert result["status"] == "ingested", result
    tables = [
        name
        for (name,) in workflow.rows(
            "SELECT table_name FROM information_schema.tables"
            " WHERE table_schema = 'public' AND table_type = 'BASE TABLE'"
        )
    ]
    assert {"narrative_documents", "document_chunks", "concept_versions", "concept_relationships"} <= set(
        tables
    )
    stored = "\n".join(
        row[0] for table in tables for row in workflow.rows(f'SELECT row_to_json(t)::text FROM "{table}" t')
    )
    assert leaks(stored) == []
    assert "hunter-two" not in stored and KEY_BODY not in stored
    (title,) = workflow.rows("SELECT title FROM narrative_documents")[0]
    assert title.startswith("Title: write [EMAIL], call [PHONE]")
    headings = {h for (h,) in workflow.rows("SELECT heading FROM document_chunks")}
    assert all("[EMAIL]" in h for h in headings)
    # Lore survives: the year, the vault code and the names of the world.
    contents = " ".join(c for (c,) in workflow.rows("SELECT content FROM document_chunks"))
    assert "1247" in contents and "4421 9983 1207" in contents
    names = {n for (n,) in workflow.rows("SELECT name FROM narrative_concepts")}
    assert names == {"Kael Dunmore", "Ember Court"}
    (message,) = workflow.published()
    assert leaks(message.title) == [] and "[EMAIL]" in message.title
    assert set(message.pii_redactions) == {*PLANTED, "PRIVATE_KEY"}


def test_a_quarantine_reason_quoting_the_document_is_scrubbed(workflow: Workflow) -> None:
    # The reason quotes the offending value, which here holds a contact.
    bad = b"---\ntitle:\n  contact: mira.voss@scriptorium.example\n---\n# Court\n\nText.\n"

    (result,) = workflow.upload("incoming/emberfall/bad-title.md", bad)

    assert result["status"] == "quarantined" and result["reason_code"] == "malformed_front_matter"
    assert "line 3" in result["reason"] and "[EMAIL]" in result["reason"]
    (stored,) = workflow.rows("SELECT reason FROM quarantined_uploads")[0]
    assert stored == result["reason"] and "scriptorium" not in stored
