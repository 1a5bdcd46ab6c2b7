"""The pure parts of worlds with parents (docs/worlds.md): the front matter's `parent`, and how the search
and context SQL widen from one world to a lineage."""

from __future__ import annotations

import pytest

from knowledge.adapters.postgres import context, search
from knowledge.errors import InvalidDocumentError
from knowledge.ingestion.parsing import parse_document
from knowledge.ingestion.steps import parsed_from_json, parsed_to_json


def test_front_matter_parent_is_read_and_kept_out_of_metadata() -> None:
    doc = parse_document(b"---\nworld: exiles\nparent: emberfall\n---\n# Exile\n\nText.\n", "exiles/a.md")
    assert (doc.world, doc.parent, doc.metadata) == ("exiles", "emberfall", {})
    # Through the workflow's artifacts (parse -> scrub -> store) it survives.
    assert parsed_from_json(parsed_to_json(doc)).parent == "emberfall"
    assert parse_document(b"# No front matter\n\nText.\n", "a.md").parent is None


@pytest.mark.parametrize("value", ["Ember Fall", "'-x'", "[emberfall]", "42"])
def test_a_parent_that_is_not_a_world_slug_is_refused_with_its_line(value: str) -> None:
    with pytest.raises(InvalidDocumentError) as refused:
        parse_document(f"---\ntitle: T\nparent: {value}\n---\nText.\n".encode(), "a.md")
    assert refused.value.reason_code == "malformed_front_matter"
    assert refused.value.message.startswith("line 3:") and "'parent'" in refused.value.message


def _all_sql(many: bool) -> list[str]:
    lineage = search._LINEAGE if many else search._WORLD_ONLY
    return [search._vector_sql(lineage, exact=exact, many=many).decode() for exact in (False, True)] + [
        search._hybrid_sql(lineage, many, many).decode(),
        search._keyword_only_sql(lineage, many, many).decode(),
    ]


def test_one_world_keeps_its_sql_and_a_lineage_reads_every_world_of_it() -> None:
    for sql in _all_sql(many=False):
        assert "%(worlds)s" not in sql and search._PARENT in sql
    for sql in _all_sql(many=True):
        # No condition is left on the one world: every world_id condition reads the lineage.
        assert "%(world)s" not in sql and search._PARENT not in sql
        assert "ANY(%(worlds)s::text[])" in sql
    hybrid = _all_sql(many=True)[2]
    assert search._STATS_MANY in hybrid and search._STATS_ONE not in hybrid


def test_context_concepts_of_a_lineage_shadow_by_name() -> None:
    sql = context._LINEAGE_CONCEPTS_SQL
    assert "%(world)s" not in sql
    # Both the nearest-concepts scan and the main query leave out concepts a nearer world names too.
    assert sql.count(context._VISIBLE) == 2
