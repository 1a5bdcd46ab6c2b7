from __future__ import annotations

import dataclasses
import json
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from knowledge.model import Section
from knowledge.pii import CATEGORIES, detect, scrub, scrub_sections

LABELLED = Path(__file__).parent / "data" / "pii_labelled.jsonl"


def found(text: str) -> list[tuple[str, str]]:
    return [(category, text[start:end]) for start, end, category in detect(text)]


# --- per category -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "address",
    ["archivist@emberhold.example", "mira.voss+lore@scriptorium.org", "Lore.Keeper@Studio-North.com"],
)
def test_email(address: str) -> None:
    assert found(f"Write to {address}.") == [("EMAIL", address)]


@pytest.mark.parametrize("text", ["a@b", "name@localhost", "user at example dot com", "@handle"])
def test_not_email(text: str) -> None:
    assert found(text) == []


@pytest.mark.parametrize(
    "number",
    [
        "+44 20 7946 0958",
        "+1 (415) 555-0132",
        "+33 1 23 45 67 89",
        "+14155550132",
        "+44 (0)20 7946 0958",
        "(415) 555-0132",
        "415-555-0132",
        "415.555.0132",
        "1-800-555-0199",
        "020 7946 0958",
        "07700 900123",
        "01 23 45 67 89",
    ],
)
def test_phone(number: str) -> None:
    assert found(f"Call {number} today.") == [("PHONE", number)]


@pytest.mark.parametrize(
    "text",
    [
        "In the year 1247 the court fell.",
        "Signed on 2024-01-15, renewed 15/01/2025 and 01.02.2024.",
        "HP 1200/1500, +5 strength, +100 gold and +2 levels.",
        "Patch 1.2.3 and client v2.10.4.1.",
        "Order #123-456-7890 shipped.",
        "ISBN 978-3-16-148410-0 and ISBN 0-306-40615-2.",
        "The gate code is 0000 0000 0000.",
        "Extension 4521, room 101, 12:30:45.",
        "Dates 01-02-2024 and 2023 11 02.",
    ],
)
def test_not_phone(text: str) -> None:
    assert found(text) == []


@pytest.mark.parametrize(
    "number",
    ["4111 1111 1111 1111", "4012-8888-8888-1881", "5555555555554444", "3782 822463 10005", "4222222222222"],
)
def test_card_luhn_valid(number: str) -> None:
    assert found(f"Card {number} on file.") == [("CARD", number)]


@pytest.mark.parametrize(
    "text",
    [
        "Card 4111 1111 1111 1112 fails Luhn.",
        "Reference 1234 5678 9012 3456.",  # no issuer starts with 1
        "Years 1999 2004 2011 2016.",
        "Mixed separators 4111-1111 1111-1111.",
        "Too long 41111111111111111111.",
        "ISBN 9780306406157.",
    ],
)
def test_not_card(text: str) -> None:
    assert found(text) == []


def test_card_keeps_trailing_expiry() -> None:
    assert found("Card 4111 1111 1111 1111 12/29") == [("CARD", "4111 1111 1111 1111")]


@pytest.mark.parametrize(
    "iban", ["GB82 WEST 1234 5698 7654 32", "DE89370400440532013000", "FR14 2004 1010 0505 0001 3M02 606"]
)
def test_iban(iban: str) -> None:
    assert found(f"Pay {iban} NOW") == [("IBAN", iban)]


@pytest.mark.parametrize(
    "text",
    [
        "GB82 WEST 1234 5698 7654 33",
        "DE89370400440532013001",
        "XX82WEST12345698765432",
        "GB82 WES T123 4569 8765 432",
    ],
)
def test_not_iban(text: str) -> None:
    assert found(text) == []


@pytest.mark.parametrize(
    "text, value",
    [
        ("SSN 123-45-6789 on file", "123-45-6789"),
        ("card 536 22 1234", "536 22 1234"),
        ("SSN: 123456789", "123456789"),
        ("social security no. 412345678", "412345678"),
        ("NINO AB 12 34 56 C", "AB 12 34 56 C"),
        ("NINO CE123456A", "CE123456A"),
        ("DNI 12345678Z", "12345678Z"),
        ("NIE X1234567L", "X1234567L"),
    ],
)
def test_national_id(text: str, value: str) -> None:
    assert found(text) == [("NATIONAL_ID", value)]


@pytest.mark.parametrize(
    "text",
    [
        "000-12-3456",
        "666-12-3456",
        "912-34-5678",
        "123-00-4567",
        "123-45-0000",
        "123-45 6789",
        "id 123456789",
        "QQ 12 34 56 C",
        "BG 12 34 56 A",
        "AB 12 34 56 E",
        "12345678A",
    ],
)
def test_not_national_id(text: str) -> None:
    assert found(text) == []


@pytest.mark.parametrize(
    "address",
    ["192.168.0.1", "8.8.8.8", "2001:db8::1", "fe80::1ff:fe23:4567:890a", "::ffff:192.0.2.128", "::1"],
)
def test_ip(address: str) -> None:
    assert found(f"host {address}, port 80") == [("IP", address)]


def test_ip_at_sentence_end() -> None:
    assert found("It runs on 10.0.0.1.") == [("IP", "10.0.0.1")]


@pytest.mark.parametrize(
    "text",
    [
        "version 1.2.3.4",
        "v1.2.3.4",
        "Chapter 1.2.3.4",
        "256.1.1.1",
        "01.02.03.04",
        "1.2.3.4.5",
        "mask 255.255.255.0",
        "at 12:30:45",
        "MAC 00:1A:2B:3C:4D:5E",
        "std::vector",
        "ratio 16:9",
    ],
)
def test_not_ip(text: str) -> None:
    assert found(text) == []


@pytest.mark.parametrize(
    "text, value",
    [
        ("id AKIAIOSFODNN7EXAMPLE", "AKIAIOSFODNN7EXAMPLE"),
        ("id ASIAY34FZKBOKMUTVV7A", "ASIAY34FZKBOKMUTVV7A"),
        (
            "aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
            "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        ),
        ("key AIza" + "b" * 35, "AIza" + "b" * 35),
        ("token ghp_" + "A1" * 18, "ghp_" + "A1" * 18),
    ],
)
def test_cloud_key(text: str, value: str) -> None:
    assert found(text) == [("CLOUD_KEY", value)]


@pytest.mark.parametrize(
    "text", ["AKIA1234", "ghp_short", "AIzaShort", "secret = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"]
)
def test_not_cloud_key(text: str) -> None:
    assert found(text) == []


# --- scrub ------------------------------------------------------------------------------------------------


def test_scrub_replaces_with_tokens_and_counts() -> None:
    text = "Mail bob@example.com or ann@example.org, call +44 20 7946 0958, host 10.0.0.1."
    result = scrub(text)
    assert result.text == "Mail [EMAIL] or [EMAIL], call [PHONE], host [IP]."
    assert result.counts == {"EMAIL": 2, "PHONE": 1, "IP": 1}


def test_scrub_without_findings_is_identity() -> None:
    result = scrub("HP 1200/1500 in 1247.")
    assert result.text == "HP 1200/1500 in 1247."
    assert result.counts == {}
    assert [result.to_source_offset(i) for i in range(5)] == [0, 1, 2, 3, 4]


def test_replacement_bounds_map_to_the_original_span() -> None:
    text = "Mail bob@example.com now"
    result = scrub(text)
    start = result.text.index("[EMAIL]")
    end = start + len("[EMAIL]")
    assert text[result.to_source_offset(start) : result.to_source_offset(end)] == "bob@example.com"
    assert text[result.to_source_offset(end) :] == " now"


def test_to_source_offset_round_trips_outside_replacements() -> None:
    text = (
        "The herald (SSN 123-45-6789) rode from 10.0.0.1 to the coast.\n"
        "Write to kael@raid.example or call 415-555-0132; the card 4111 1111 1111 1111 was declined."
    )
    result = scrub(text)
    assert result.counts == {"NATIONAL_ID": 1, "IP": 1, "EMAIL": 1, "PHONE": 1, "CARD": 1}
    # Plain passages between replacements come back verbatim from the original.
    bounds = [0, *(x for r in result.replacements for x in (r.start, r.end)), len(result.text)]
    for a, b in zip(bounds[::2], bounds[1::2], strict=True):
        for i in range(a, b + 1):
            for j in range(i, b + 1, 7):
                assert text[result.to_source_offset(i) : result.to_source_offset(j)] == result.text[i:j]


def test_scrub_sections_keeps_source_offsets() -> None:
    source = "# Court\nAsk mira@court.example about 10.0.0.1 today.\n# Other\nNothing here."
    first = source.index("Ask")
    end = source.index("\n# Other")
    sections = [
        Section("Court", source[first:end], first, end),
        Section("Other", "Nothing here.", source.index("Nothing"), len(source)),
    ]
    scrubbed, counts = scrub_sections(sections)
    assert counts == {"EMAIL": 1, "IP": 1}
    court, other = scrubbed
    assert court.text == "Ask [EMAIL] about [IP] today."
    assert (court.start, court.end) == (first, end)
    assert other == sections[1]
    t = court.text
    assert source[court.source_offset(0) : court.source_offset(len(t))] == source[first:end]
    about = t.index("about")
    assert source[court.source_offset(about) : court.source_offset(about + 5)] == "about"
    token = t.index("[IP]")
    assert source[court.source_offset(token) : court.source_offset(token + 4)] == "10.0.0.1"
    # Scrubbing again changes nothing.
    assert scrub_sections(scrubbed) == (scrubbed, {})


def test_scrubbed_section_survives_a_json_round_trip() -> None:
    # Pipeline steps pass sections between Lambdas as JSON (`dataclasses.asdict`, then `Section(**s)`).
    [section], _ = scrub_sections([Section("Court", "Ask mira@court.example today.", 100, 129)])
    restored = Section(**json.loads(json.dumps(dataclasses.asdict(section))))
    assert restored == section
    assert restored.source_offset(len("Ask [EMAIL]")) == 100 + len("Ask mira@court.example")


# --- labelled evaluation ----------------------------------------------------------------------------------


def test_precision_and_recall_on_labelled_set() -> None:
    rows = [json.loads(line) for line in LABELLED.read_text(encoding="utf-8").splitlines() if line.strip()]
    assert len(rows) >= 150
    true_pos: Counter[str] = Counter()
    predicted: Counter[str] = Counter()
    gold_total: Counter[str] = Counter()
    gold_found: Counter[str] = Counter()
    for row in rows:
        text = row["text"]
        gold = [(e["start"], e["end"], e["category"]) for e in row["entities"]]
        pred = detect(text)
        for s, e, c in pred:
            predicted[c] += 1
            if any(c == gc and s < ge and gs < e for gs, ge, gc in gold):
                true_pos[c] += 1
        for gs, ge, gc in gold:
            gold_total[gc] += 1
            if any(c == gc and s < ge and gs < e for s, e, c in pred):
                gold_found[gc] += 1

    print()
    for category in CATEGORIES:
        p = true_pos[category] / predicted[category] if predicted[category] else 1.0
        r = gold_found[category] / gold_total[category] if gold_total[category] else 1.0
        print(f"{category:12} precision {p:.3f} ({true_pos[category]}/{predicted[category]})  "
              f"recall {r:.3f} ({gold_found[category]}/{gold_total[category]})")  # fmt: skip
    precision = sum(true_pos.values()) / sum(predicted.values())
    recall = sum(gold_found.values()) / sum(gold_total.values())
    print(f"{'micro':12} precision {precision:.3f}  recall {recall:.3f}")
    assert set(gold_total) == set(CATEGORIES)
    assert precision >= 0.95
    assert recall >= 0.95


# --- properties -------------------------------------------------------------------------------------------

_FRAGMENTS = [
    "bob@example.com",
    "+44 20 7946 0958",
    "415-555-0132",
    "(415) 555-0132",
    "020 7946 0958",
    "4111 1111 1111 1111",
    "4111111111111111",
    "GB82 WEST 1234 5698 7654 32",
    "123-45-6789",
    "AB 12 34 56 C",
    "12345678Z",
    "10.0.0.1",
    "2001:db8::1",
    "::1",
    "AKIAIOSFODNN7EXAMPLE",
    "aws_secret_access_key=",
    "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
    "ghp_" + "a" * 36,
    "[EMAIL]",
    "[IP]",
    "SSN ",
    "version ",
    "Order #",
    "HP 1200/1500",
    "2024-01-15",
]
_texts = st.lists(
    st.one_of(
        st.sampled_from(_FRAGMENTS),
        st.text(alphabet="0123456789 .-:+@()[]/#\nabcdefXYZ", max_size=12),
        st.text(max_size=6),
    ),
    max_size=12,
).map("".join)


@settings(max_examples=300, deadline=None)
@given(_texts)
def test_scrub_is_idempotent_and_maps_monotonically(text: str) -> None:
    result = scrub(text)
    assert scrub(result.text).text == result.text
    positions = [result.to_source_offset(i) for i in range(len(result.text) + 1)]
    assert positions == sorted(positions)
    assert positions[0] == 0
    assert positions[-1] == len(text)
    # Outside tokens the scrubbed text is the original, character for character.
    covered = {i for r in result.replacements for i in range(r.start, r.end)}
    for i, ch in enumerate(result.text):
        if i not in covered:
            assert text[positions[i]] == ch


@settings(max_examples=200, deadline=None)
@given(st.text())
def test_scrub_never_raises_on_any_text(text: str) -> None:
    result = scrub(text)
    assert sum(result.counts.values()) == len(result.replacements)
