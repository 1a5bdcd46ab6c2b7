"""Personal and secret data scrubbing for document text, before it is chunked, embedded and stored.

Lore documents are written by people, and people paste real contact details, card numbers and keys into
them. `scrub` replaces each finding with a category token such as ``[EMAIL]`` and keeps a map from the
scrubbed text back to the original, so chunk offsets still cite the uploaded file.

Detection favours precision on game-world prose (years, dates, stats such as "HP 1200/1500", version
numbers, coordinates, order numbers): every numeric category is either checksum-validated (cards: Luhn;
IBANs: ISO 7064 mod 97; Spanish DNI/NIE: mod 23 letter) or bound to a strict layout.

Categories (token = ``[CATEGORY]``):

* ``EMAIL``: ASCII addresses ``local@domain.tld``.
* ``PHONE``: international ``+CC ...`` (8 to 15 digits), North American ``(415) 555-0132`` /
  ``415-555-0132`` / ``1-800-555-0199``, and national trunk-prefixed numbers ``020 7946 0958`` /
  ``01 23 45 67 89`` (9 to 12 digits, grouped). Bare digit runs are never phones. Candidates right after
  words such as "order", "invoice", "ref", "ISBN", "serial" or "#" are left alone.
* ``CARD``: 13 to 19 digits, plain or grouped by one kind of separator as issuers print them (4-4-4-4...,
  4-6-5, 4-6-4), with a known issuer prefix and a valid Luhn check digit.
* ``IBAN``: country code, check digits and BBAN of the registered length for the country (uppercase,
  plain or in groups of four), valid mod 97.
* ``NATIONAL_ID``: US SSN ``123-45-6789`` / ``123 45 6789`` (area not 000, 666 or 900-999, group not 00,
  serial not 0000; bare nine digits only right after "SSN" or "social security"), UK National Insurance
  numbers ``AB 12 34 56 C`` (prefix letters and suffix A-D as HMRC allocates them), Spanish DNI
  ``12345678Z`` and NIE ``X1234567L`` (check letter validated).
* ``IP``: IPv4 with valid octets and no leading zeros (not after "version", "v", "build", "chapter"...,
  and not netmasks 255.x.x.x or 0.x.x.x), IPv6 in any textual form Python's `ipaddress` accepts (at
  least one hex digit).
* ``CLOUD_KEY``: AWS access key ids (``AKIA``/``ASIA`` + 16), AWS secret access keys (40 characters after an
  ``aws_secret_access_key``-like label; only the value is replaced), Google API keys (``AIza`` + 35),
  GitHub tokens (``ghp_``/``gho_``/``ghu_``/``ghs_``/``ghr_`` + 36 or more, ``github_pat_...``).

Scrubbing is idempotent: tokens are never matched, and replacing one finding can expose another (a
boundary that was a digit becomes a bracket), so `scrub` repeats detection until nothing is found.
"""

from __future__ import annotations

import ipaddress
import re
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Final

from knowledge.model import Replacement, Section, map_to_source

EMAIL: Final = "EMAIL"
PHONE: Final = "PHONE"
CARD: Final = "CARD"
IBAN: Final = "IBAN"
NATIONAL_ID: Final = "NATIONAL_ID"
IP: Final = "IP"
CLOUD_KEY: Final = "CLOUD_KEY"

# When two findings overlap, the more specific category wins (an IBAN's digits are not a phone number).
CATEGORIES: Final[tuple[str, ...]] = (CLOUD_KEY, EMAIL, IBAN, CARD, NATIONAL_ID, IP, PHONE)

# Detection rounds before giving up on a fixpoint; two suffice in practice (see module docstring).
_MAX_ROUNDS: Final = 8


@dataclass(frozen=True, slots=True)
class ScrubResult:
    text: str
    counts: dict[str, int] = field(default_factory=dict)  # per category, only non-zero
    replacements: tuple[Replacement, ...] = ()  # sorted; source offsets index the original text

    def to_source_offset(self, pos: int) -> int:
        """Offset in the original text of position `pos` (0 <= pos <= len(text)) of the scrubbed text."""
        return map_to_source(pos, 0, self.replacements)


# --- patterns ---------------------------------------------------------------------------------------------

_EMAIL_RE: Final = re.compile(
    r"(?<![\w.%+-])[A-Za-z0-9](?:[A-Za-z0-9._%+-]{0,62}[A-Za-z0-9_%+-])?"
    r"@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,24}(?![\w-])"
)

_OCTET: Final = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_IPV4_RE: Final = re.compile(rf"(?<![\w.]){_OCTET}(?:\.{_OCTET}){{3}}(?!\w|\.\w)")
_IPV4_NEGATIVE_CONTEXT: Final = re.compile(
    r"(?i)(?:\bv|\bver|version|build|release|patch|rev|revision|chapter|section|rule|§)\.?\s*$"
)
_IPV6_RE: Final = re.compile(
    rf"(?<![\w:.])(?:[0-9A-Fa-f]{{0,4}}:){{2,7}}(?:[0-9A-Fa-f]{{1,4}}|{_OCTET}(?:\.{_OCTET}){{3}})?"
    r"(?![\w:]|\.\w)"
)

_AWS_KEY_ID_RE: Final = re.compile(r"(?<![A-Za-z0-9])(?:AKIA|ASIA)[A-Z0-9]{16}(?![A-Za-z0-9])")
_AWS_SECRET_RE: Final = re.compile(
    r"(?i:aws[_ -]?secret(?:[_ -]?access)?[_ -]?key|secret[_ -]?access[_ -]?key)[\"']?\s*(?:[:=]|=>)\s*[\"']?"
    r"(?P<value>[A-Za-z0-9/+]{40})(?![A-Za-z0-9/+=])"
)
_GCP_KEY_RE: Final = re.compile(r"(?<![\w-])AIza[0-9A-Za-z_-]{35}(?![\w-])")
_GITHUB_TOKEN_RE: Final = re.compile(
    r"(?<![A-Za-z0-9_])(?:gh[pousr]_[A-Za-z0-9]{36,255}|github_pat_[A-Za-z0-9_]{22,255})(?![A-Za-z0-9_])"
)

# Runs of digit groups joined by single spaces or dashes; layout, issuer and Luhn are checked in code.
_CARD_RE: Final = re.compile(r"(?<![\w.,/+-])[0-9]{1,19}(?:[ -][0-9]{1,19})*(?!\w|[.,/-][0-9])")

_CARD_SEPARATOR: Final = re.compile(r"[ -]")

_IBAN_RE: Final = re.compile(r"(?<![A-Za-z0-9])[A-Z]{2}[0-9]{2}(?: ?[A-Z0-9]){11,30}(?![A-Za-z0-9])")
# Registered IBAN lengths (ISO 13616 registry) of the countries we recognise.
_IBAN_LENGTHS: Final = {
    "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22, "BH": 22, "BR": 29,
    "CH": 21, "CR": 22, "CY": 28, "CZ": 24, "DE": 22, "DK": 18, "DO": 28, "EE": 20, "ES": 24, "FI": 18,
    "FO": 18, "FR": 27, "GB": 22, "GE": 22, "GI": 23, "GL": 18, "GR": 27, "GT": 28, "HR": 21, "HU": 28,
    "IE": 22, "IL": 23, "IS": 26, "IT": 27, "JO": 30, "KW": 30, "KZ": 20, "LB": 28, "LI": 21, "LT": 20,
    "LU": 20, "LV": 21, "MC": 27, "MD": 24, "ME": 22, "MK": 19, "MR": 27, "MT": 31, "MU": 30, "NL": 18,
    "NO": 15, "PK": 24, "PL": 28, "PS": 29, "PT": 25, "QA": 29, "RO": 24, "RS": 22, "SA": 24, "SE": 24,
    "SI": 19, "SK": 24, "SM": 27, "TN": 24, "TR": 26, "UA": 29, "VG": 24, "XK": 20,
}  # fmt: skip

_SSN_RE: Final = re.compile(
    r"(?<![\w-])(?!000|666|9[0-9]{2})[0-9]{3}(?P<sep>[- ])(?!00)[0-9]{2}(?P=sep)(?!0000)[0-9]{4}"
    r"(?![\w-]|\.[0-9])"
)
_SSN_BARE_RE: Final = re.compile(
    r"(?i:\b(?:ssn|social\s+security(?:\s+(?:number|no\.?|#))?))\W{0,5}"
    r"(?P<value>(?<![0-9])(?!000|666|9[0-9]{2})[0-9]{3}(?!00)[0-9]{2}(?!0000)[0-9]{4})(?![\w-])"
)
_NINO_RE: Final = re.compile(
    r"(?<![A-Za-z0-9])(?!BG|GB|KN|NK|NT|TN|ZZ)[A-CEGHJ-PR-TW-Z][A-CEGHJ-NPR-TW-Z]"
    r"(?P<sep> ?)[0-9]{2}(?P=sep)[0-9]{2}(?P=sep)[0-9]{2}(?P=sep)[A-D](?![A-Za-z0-9])"
)
_DNI_RE: Final = re.compile(
    r"(?<![\w-])(?:(?P<nie>[XYZ])-?(?P<nie_number>[0-9]{7})|(?P<dni_number>[0-9]{8}))-?(?P<letter>[A-Z])(?![\w-])"
)
_DNI_LETTERS: Final = "TRWAGMYFPDXBNJZSQVHLCKE"

_PHONE_INTL_RE: Final = re.compile(
    r"(?<![\w+])\+[1-9][0-9]{0,14}(?:[ .-]?\([0-9]{1,4}\)[ .-]?[0-9]{1,5})?(?:[ .-][0-9]{1,8}){0,6}"
    r"(?!\w|[.-][0-9])"
)
_PHONE_NANP_RE: Final = re.compile(
    r"(?<![\w+./-])(?:1[ .-])?(?:\([2-9][0-9]{2}\) ?|[2-9][0-9]{2}(?P<sep>[ .-]))[2-9][0-9]{2}"
    r"(?(sep)(?P=sep)|[ .-])[0-9]{4}(?!\w|[.-][0-9])"
)
_PHONE_TRUNK_RE: Final = re.compile(
    r"(?<![\w+./-])(?:\(0[1-9][0-9]{0,3}\)|0[1-9][0-9]{0,3})(?:[ -][0-9]{2,8}){1,4}(?!\w|[./-][0-9])"
)
_PHONE_NEGATIVE_CONTEXT: Final = re.compile(
    r"(?i)(?:order|invoice|ref|reference|ticket|serial|sku|isbn|issn|tracking|part|model|batch|lot|#)"
    r"\s*(?:no\.?|number)?\s*[:#.]?\s*$"
)
_CONTEXT_WINDOW: Final = 24

_DIGITS_ONLY: Final = re.compile(r"[^0-9]")


# --- validators -------------------------------------------------------------------------------------------


def _luhn_ok(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def _card_issuer_ok(digits: str) -> bool:
    # Prefixes of the major schemes; keeps years ("1999 2000 ...") and most ids out.
    first = digits[0]
    if first in "456":
        return True
    if first == "3":
        return digits[1] in "0456789"
    if first == "2":
        return 2221 <= int(digits[:4]) <= 2720
    return False


def _card_layout_ok(groups: list[str]) -> bool:
    if len(groups) == 1:
        return True
    lengths = [len(g) for g in groups]
    if lengths in ([4, 6, 5], [4, 6, 4]):
        return True
    return all(n == 4 for n in lengths[:-1]) and 1 <= lengths[-1] <= 4


def _iban_ok(compact: str) -> bool:
    if _IBAN_LENGTHS.get(compact[:2]) != len(compact):
        return False
    rearranged = compact[4:] + compact[:4]
    number = "".join(str(int(ch, 36)) for ch in rearranged)
    return int(number) % 97 == 1


# --- finders: each yields (start, end) spans of one category ----------------------------------------------

Finder = Callable[[str], Iterator[tuple[int, int]]]


def _preceded_by(text: str, start: int, pattern: re.Pattern[str]) -> bool:
    return pattern.search(text, max(0, start - _CONTEXT_WINDOW), start) is not None


# Literal markers a pattern cannot match without: a substring test (C speed) skips a full regex scan.
_GITHUB_PREFIXES: Final = ("ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_")


def _find_emails(text: str) -> Iterator[tuple[int, int]]:
    if "@" not in text:
        return
    for m in _EMAIL_RE.finditer(text):
        yield m.span()


def _find_cloud_keys(text: str) -> Iterator[tuple[int, int]]:
    if "AKIA" in text or "ASIA" in text:
        yield from (m.span() for m in _AWS_KEY_ID_RE.finditer(text))
    if "AIza" in text:
        yield from (m.span() for m in _GCP_KEY_RE.finditer(text))
    if any(prefix in text for prefix in _GITHUB_PREFIXES):
        yield from (m.span() for m in _GITHUB_TOKEN_RE.finditer(text))
    if "secret" in text.lower():
        yield from (m.span("value") for m in _AWS_SECRET_RE.finditer(text))


def _find_cards(text: str) -> Iterator[tuple[int, int]]:
    for m in _CARD_RE.finditer(text):
        run = m.group()
        if len(run) < 13:
            continue
        separators = {ch for ch in run if ch in " -"}
        if len(separators) > 1:
            continue
        # A run may carry trailing groups (an expiry, a count): try the longest valid prefix of groups,
        # looking no further than 19 digits so a long run of numbers costs linear time.
        groups: list[str] = []
        digits = 0
        for group in _CARD_SEPARATOR.split(run):
            digits += len(group)
            if digits > 19:
                break
            groups.append(group)
        for n in range(len(groups), 0, -1):
            number = "".join(groups[:n])
            if len(number) < 13:
                break
            if _card_layout_ok(groups[:n]) and _card_issuer_ok(number) and _luhn_ok(number):
                yield m.start(), m.start() + len(number) + (n - 1)
                break


def _find_ibans(text: str) -> Iterator[tuple[int, int]]:
    for m in _IBAN_RE.finditer(text):
        expected = _IBAN_LENGTHS.get(m.group()[:2])
        if expected is None:
            continue
        # The candidate may run into following capitals: cut it at the country's length.
        run = m.group()
        seen = 0
        cut = -1
        for i, ch in enumerate(run):
            if ch != " ":
                seen += 1
                if seen == expected:
                    cut = i + 1
                    break
        if cut < 0 or (cut < len(run) and run[cut] != " "):
            continue
        candidate = run[:cut]
        compact = candidate.replace(" ", "")
        if " " in candidate and candidate != " ".join(compact[i : i + 4] for i in range(0, len(compact), 4)):
            continue
        if _iban_ok(compact):
            yield m.start(), m.start() + cut


def _find_national_ids(text: str) -> Iterator[tuple[int, int]]:
    for m in _SSN_RE.finditer(text):
        yield m.span()
    lowered = text.lower()
    if "ssn" in lowered or "social" in lowered:
        yield from (m.span("value") for m in _SSN_BARE_RE.finditer(text))
    for m in _NINO_RE.finditer(text):
        yield m.span()
    for m in _DNI_RE.finditer(text):
        if m.group("nie"):
            number = str("XYZ".index(m.group("nie"))) + m.group("nie_number")
        else:
            number = m.group("dni_number")
        if _DNI_LETTERS[int(number) % 23] == m.group("letter"):
            yield m.span()


def _find_ips(text: str) -> Iterator[tuple[int, int]]:
    for m in _IPV4_RE.finditer(text):
        # Netmasks (255.255.255.0) and "this network" (0.x.x.x) address no host.
        if m.group().startswith(("255.", "0.")):
            continue
        if not _preceded_by(text, m.start(), _IPV4_NEGATIVE_CONTEXT):
            yield m.span()
    for m in _IPV6_RE.finditer(text):
        candidate = m.group()
        if candidate.count(":") < 2 or not any(ch not in ":." for ch in candidate):
            continue
        try:
            ipaddress.IPv6Address(candidate)
        except ValueError:
            continue  # times such as 12:30:45, MAC addresses, C++ scopes
        yield m.span()


def _find_phones(text: str) -> Iterator[tuple[int, int]]:
    for m in _PHONE_INTL_RE.finditer(text):
        if 8 <= len(_DIGITS_ONLY.sub("", m.group())) <= 15 and not _preceded_by(
            text, m.start(), _PHONE_NEGATIVE_CONTEXT
        ):
            yield m.span()
    for m in _PHONE_NANP_RE.finditer(text):
        if not _preceded_by(text, m.start(), _PHONE_NEGATIVE_CONTEXT):
            yield m.span()
    for m in _PHONE_TRUNK_RE.finditer(text):
        if 9 <= len(_DIGITS_ONLY.sub("", m.group())) <= 12 and not _preceded_by(
            text, m.start(), _PHONE_NEGATIVE_CONTEXT
        ):
            yield m.span()


_FINDERS: Final[dict[str, Finder]] = {
    CLOUD_KEY: _find_cloud_keys,
    EMAIL: _find_emails,
    IBAN: _find_ibans,
    CARD: _find_cards,
    NATIONAL_ID: _find_national_ids,
    IP: _find_ips,
    PHONE: _find_phones,
}


def detect(text: str) -> list[tuple[int, int, str]]:
    """Non-overlapping findings `(start, end, category)` in `text`, sorted by start.

    Categories claim text in `CATEGORIES` order; within one, earlier then longer findings win.
    """
    taken: list[tuple[int, int, str]] = []  # sorted by start, pairwise disjoint
    for category in CATEGORIES:
        starts = [t[0] for t in taken]
        accepted: list[tuple[int, int, str]] = []
        last_end = -1
        for start, end in sorted(set(_FINDERS[category](text)), key=lambda span: (span[0], -span[1])):
            if end <= start or start < last_end:
                continue
            i = bisect_left(starts, start)
            if (i > 0 and taken[i - 1][1] > start) or (i < len(taken) and taken[i][0] < end):
                continue
            accepted.append((start, end, category))
            last_end = end
        if accepted:
            taken = sorted(taken + accepted)  # two sorted runs: a linear merge
    return taken


def _render(original: str, spans: Sequence[tuple[int, int, str]]) -> ScrubResult:
    parts: list[str] = []
    replacements: list[Replacement] = []
    counts: dict[str, int] = {}
    pos = 0  # in original
    out = 0  # in scrubbed text
    for start, end, category in spans:
        parts.append(original[pos:start])
        out += start - pos
        token = f"[{category}]"
        parts.append(token)
        replacements.append(Replacement(out, out + len(token), start, end))
        out += len(token)
        pos = end
        counts[category] = counts.get(category, 0) + 1
    parts.append(original[pos:])
    return ScrubResult("".join(parts), counts, tuple(replacements))


def scrub(text: str) -> ScrubResult:
    """Replace personal data and secrets in `text` with category tokens (see the module docstring)."""
    result = ScrubResult(text)
    spans: list[tuple[int, int, str]] = []
    for _ in range(_MAX_ROUNDS):
        found = detect(result.text)
        if not found:
            break
        # Findings never cover a token (no pattern matches brackets), so both ends map into plain text.
        spans.extend(
            (result.to_source_offset(start), result.to_source_offset(end), category)
            for start, end, category in found
        )
        spans.sort()
        result = _render(text, spans)
    return result


def scrub_sections(sections: Sequence[Section]) -> tuple[tuple[Section, ...], dict[str, int]]:
    """Scrub each section's text; the sections keep their source `start`/`end` and gain `replacements`.

    Positions inside a scrubbed section's text map back to source offsets with `Section.source_offset`.
    Returns the sections and the total count of findings per category.
    """
    totals: dict[str, int] = {}
    scrubbed: list[Section] = []
    for section in sections:
        result = scrub(section.text)
        for category, n in result.counts.items():
            totals[category] = totals.get(category, 0) + n
        if not result.replacements:
            scrubbed.append(section)
            continue
        replacements = [
            Replacement(
                r.start, r.end, section.source_offset(r.source_start), section.source_offset(r.source_end)
            )
            for r in result.replacements
        ]
        # A section scrubbed before keeps its earlier replacements, moved to the new text's coordinates;
        # they sit in text the new pass left alone.
        replacements.extend(
            Replacement(
                _forward(old.start, result), _forward(old.end, result), old.source_start, old.source_end
            )
            for old in section.replacements
        )
        replacements.sort(key=lambda r: r.start)
        scrubbed.append(
            Section(section.heading, result.text, section.start, section.end, tuple(replacements))
        )
    return tuple(scrubbed), totals


def _forward(pos: int, result: ScrubResult) -> int:
    """Position in `result.text` of position `pos` (outside findings) of the text that was scrubbed."""
    i = bisect_right(result.replacements, pos, key=lambda r: r.source_end) - 1
    return pos if i < 0 else pos + result.replacements[i].end - result.replacements[i].source_end
