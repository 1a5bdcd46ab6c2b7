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
  words such as "order", "invoice", "ref", "ISBN", "serial", "vault code" or "#" are left alone.
* ``CARD``: 13 to 19 digits, plain or grouped by one kind of separator (space, dash or dot) as issuers
  print them (4-4-4-4..., 4-6-5, 4-6-4), with a known issuer prefix and a valid Luhn check digit.
* ``IBAN``: country code, check digits and BBAN of the registered length for the country (any case,
  plain or in groups of four joined by spaces or dashes), valid mod 97.
* ``NATIONAL_ID``: US SSN ``123-45-6789`` / ``123 45 6789`` (area not 000, 666 or 900-999, group not 00,
  serial not 0000; bare nine digits only right after "SSN" or "social security"), UK National Insurance
  numbers ``AB 12 34 56 C`` (prefix letters and suffix A-D as HMRC allocates them), Spanish DNI
  ``12345678Z`` and NIE ``X1234567L`` (check letter validated).
* ``IP``: IPv4 with valid octets and no leading zeros (not after "version", "v", "build", "chapter"...,
  and not netmasks 255.x.x.x or 0.x.x.x), IPv6 in any textual form Python's `ipaddress` accepts (at
  least one hex digit).
* ``API_KEY``: keys and tokens of common providers, each by its own prefix and length: AWS access key ids
  (``AKIA``/``ASIA`` + 16) and secret access keys (40 characters after an ``aws_secret_access_key``-like
  label; only the value is replaced), Google (``AIza`` + 35, OAuth ``ya29.``), GitHub (``ghp_``/``gho_``/
  ``ghu_``/``ghs_``/``ghr_`` + 36 or more, ``github_pat_...``), GitLab ``glpat-``, Slack ``xox?-`` tokens and
  webhook URLs, Stripe secret and restricted keys (``sk_live_``/``sk_test_``/``rk_...``, ``whsec_``), OpenAI
  and Anthropic ``sk-...``, SendGrid, npm, Hugging Face; and the credential of an HTTP ``Bearer`` or
  ``Authorization:`` header (at least 12 characters with a letter and a digit).
* ``PRIVATE_KEY``: a PEM or PGP private key, the whole block from ``-----BEGIN ... PRIVATE KEY-----`` to its
  ``END`` line (to the next blank line when the block is cut short).
* ``JWT``: ``header.payload.signature`` in base64url whose header decodes to a JSON object.
* ``PASSWORD``: the value in ``key: value`` / ``key=value`` / ``"key": "value"`` form when the key names a
  secret (``password``, ``passwd``, ``pwd``, ``passphrase``, ``api_key``, ``client_secret``, ``db_password``,
  ``access_token``...), and the password of a URL's ``user:password@``. Bare ``secret``, ``token``,
  ``pass``, ``auth`` and ``credentials`` are ordinary words in lore ("the secret: she was never crowned"),
  so their value must look generated (6 or more characters with a letter and a digit). Only the value is
  replaced.
* ``ADDRESS``: a US-style street address: house number, a capitalised street name of one to four words and
  a street suffix (``Street``, ``Ave``, ``Blvd.``...), with an optional directional, unit and
  ``City, ST 12345``. Suffixes that are also lore words (``Court``, ``Place``, ``Way``, ``Square``...) count
  only with a unit, a ZIP code or an address cue before them ("lives at", "address:"); a number read as a
  year ("in 1247 Ember Court fell") or after "chapter", "page", "no." is not a house number.
* ``DATE_OF_BIRTH``: a calendar date (``1990-04-12``, ``12/04/1990``, ``12 April 1990``, ``April 12, 1990``)
  right after "born", "DOB", "date of birth", "birthdate" or "birthday", in a year from 1900 on: a
  character born in 1247 is lore. Only the date is replaced.

Every field a document or story event stores goes through this one scrubber: section text and headings
(`scrub_sections`), titles and descriptions (`scrub`), front matter and event attributes (`scrub_value`,
which also treats a value under a secret-naming key as a password).

Scrubbing is idempotent: tokens are never matched, and replacing one finding can expose another (a
boundary that was a digit becomes a bracket), so `scrub` repeats detection until nothing is found.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import ipaddress
import json
import re
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date
from functools import lru_cache
from typing import Any, Final

from knowledge.model import Replacement, Section, map_to_source

PRIVATE_KEY: Final = "PRIVATE_KEY"
JWT: Final = "JWT"
API_KEY: Final = "API_KEY"
PASSWORD: Final = "PASSWORD"
EMAIL: Final = "EMAIL"
PHONE: Final = "PHONE"
CARD: Final = "CARD"
IBAN: Final = "IBAN"
NATIONAL_ID: Final = "NATIONAL_ID"
IP: Final = "IP"
DATE_OF_BIRTH: Final = "DATE_OF_BIRTH"
ADDRESS: Final = "ADDRESS"

# When two findings overlap, the more specific category wins (an IBAN's digits are not a phone number, a
# key block's base64 is not a token).
CATEGORIES: Final[tuple[str, ...]] = (
    PRIVATE_KEY, JWT, API_KEY, PASSWORD, EMAIL, IBAN, CARD, NATIONAL_ID, DATE_OF_BIRTH, ADDRESS, IP, PHONE
)  # fmt: skip
# A token in scrubbed text; no finding may cover one (offsets map back through replacements).
_TOKEN_RE: Final = re.compile(r"\[(?:" + "|".join(CATEGORIES) + r")\]")

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
# Provider tokens, each anchored on its documented prefix; `_KEY_PREFIXES` gates the scan, and a match
# must hold a letter and a digit (key material is random; "sk-" + a long word is a hyphenated name).
_PROVIDER_TOKEN_RE: Final = re.compile(
    r"(?<![A-Za-z0-9_-])(?:"
    r"glpat-[A-Za-z0-9_-]{20,255}"  # GitLab personal access token
    r"|xox[abeoprs]-[A-Za-z0-9-]{10,255}"  # Slack bot/user/app/refresh tokens
    r"|xapp-[0-9]-[A-Za-z0-9-]{10,255}"  # Slack app-level token
    r"|(?:sk|rk)_(?:live|test)_[A-Za-z0-9]{16,247}"  # Stripe secret and restricted keys
    r"|whsec_[A-Za-z0-9]{24,255}"  # Stripe webhook signing secret
    r"|sk-(?:proj|svcacct|admin)-[A-Za-z0-9_-]{20,255}"  # OpenAI project/service/admin keys
    r"|sk-ant-[a-z]{3}[0-9]{2}-[A-Za-z0-9_-]{20,255}"  # Anthropic
    r"|sk-[A-Za-z0-9]{32,255}"  # OpenAI user keys
    r"|SG\.[A-Za-z0-9_-]{16,32}\.[A-Za-z0-9_-]{16,64}"  # SendGrid
    r"|npm_[A-Za-z0-9]{36}"  # npm
    r"|hf_[A-Za-z0-9]{30,40}"  # Hugging Face
    r"|ya29\.[A-Za-z0-9_-]{20,255}"  # Google OAuth access token
    r")(?![A-Za-z0-9_-])"
    r"|https://hooks\.slack\.com/services/[A-Za-z0-9/_-]{20,255}"  # Slack incoming webhook
)
_KEY_PREFIXES: Final = (
    "glpat-", "xox", "xapp-", "_live_", "_test_", "whsec_", "sk-", "SG.", "npm_", "hf_", "ya29.", "hooks.slack",
)  # fmt: skip
# A credential sent in an HTTP header: only the credential is replaced.
_BEARER_RE: Final = re.compile(
    r"(?i:\bbearer[ \t]+|\bauthorization[\"']?[ \t]*[:=][ \t]*[\"']?(?:(?:basic|token|bearer)[ \t]+)?)"
    r"(?P<value>[A-Za-z0-9._~+/-]{12,4096}=*)(?![A-Za-z0-9._~+/=-])"
)
_JWT_RE: Final = re.compile(
    r"(?<![A-Za-z0-9_-])(?P<header>eyJ[A-Za-z0-9_-]{8,1024})\.ey[A-Za-z0-9_-]{8,16384}\.[A-Za-z0-9_-]{0,2048}"
    r"(?![A-Za-z0-9_-])"
)
_PEM_BEGIN_RE: Final = re.compile(r"-----BEGIN (?P<kind>[A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?)-----")
_BLANK_LINE_RE: Final = re.compile(r"\n[ \t]*\n")

# `key: value`, `key=value`, `"key": "value"` where the key (possibly compound: db_password, x-api-key)
# ends in a word naming a secret. The value is quoted, or runs to whitespace.
_SECRET_KEY_WORDS: Final = (
    r"password|passwd|passphrase|passcode|pwd|pass|secret|token|auth|credentials?"
    r"|api[_-]?key|apikey|secret[_-]?key|private[_-]?key|access[_-]?key"
)
_SECRET_KEY_RE: Final = re.compile(
    rf"(?i:(?P<prefix>[A-Za-z0-9]+(?:[_.-][A-Za-z0-9]+)*[_.-])?(?P<word>{_SECRET_KEY_WORDS}))"
)
# Matched from the secret word on, its first letter checked first (a scan that tries a key prefix or the
# whole alternation at every letter is several times slower); the prefix is read backwards.
_PASSWORD_RE: Final = re.compile(
    rf"(?=[PpSsTtAaCc])(?i:(?P<word>{_SECRET_KEY_WORDS}))[\"']?[ \t]*(?::=|=>|[:=])[ \t]*"
    r"(?:\"(?P<dq>[^\"\n]{1,256})\"|'(?P<sq>[^'\n]{1,256})'|(?P<bare>[^\s\"'`]{1,256}))"
)
# Bare words that are common in prose: their value must look generated.
_WEAK_SECRET_WORDS: Final = frozenset({"pass", "secret", "token", "auth", "credential", "credentials"})
_TRAILING_PUNCTUATION: Final = ".,;:)]}>"
_URL_PASSWORD_RE: Final = re.compile(
    r"\b[A-Za-z][A-Za-z0-9+.-]{1,20}://[^\s:/@\[\]]{1,128}:(?P<value>[^\s/@\[\]]{1,256})@[A-Za-z0-9]"
)
_PASSWORD_MARKERS: Final = ("pass", "pwd", "secret", "token", "auth", "credential", "key")
_KEY_CHARACTERS: Final = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-")

_MONTHS: Final = {
    "jan": 1, "feb": 2, "mar": 3, "apr": 4, "may": 5, "jun": 6, "jul": 7, "aug": 8, "sep": 9, "oct": 10,
    "nov": 11, "dec": 12,
}  # fmt: skip
_MONTH_NAME: Final = (
    r"(?:jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?|sept?(?:ember)?"
    r"|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?)\.?"
)
_DOB_RE: Final = re.compile(
    r"(?i:\b(?:born|d\.?o\.?b\.?|date[ \t]+of[ \t]+birth|birth[ \t-]?date|birthday))"
    # "born in Leeds on ...", "DOB: ...", "date of birth (UK format) ..."
    r"(?:[ \t]+(?:in|at)[ \t]+[A-Z][\w'-]*(?:[ \t]+[A-Z][\w'-]*){0,2}(?:,[ \t]*[A-Z][\w'-]*)?)?"
    r"(?:[ \t]*\([^()\n]{0,20}\))?[ \t]*[:,-]?[ \t]*(?i:(?:is|was|on|of|the)[ \t]+){0,3}"
    r"(?P<date>"
    r"(?P<iso_y>[12][0-9]{3})[-/.](?P<iso_m>[0-9]{1,2})[-/.](?P<iso_d>[0-9]{1,2})"
    r"|(?P<n1>[0-9]{1,2})(?P<sep>[-/.])(?P<n2>[0-9]{1,2})(?P=sep)(?P<num_y>[0-9]{4}|[0-9]{2})"
    rf"|(?P<dm_d>[0-9]{{1,2}})(?i:st|nd|rd|th)?[ \t]+(?i:of[ \t]+)?(?P<dm_m>(?i:{_MONTH_NAME})),?[ \t]+"
    r"(?P<dm_y>[12][0-9]{3})"
    rf"|(?P<md_m>(?i:{_MONTH_NAME}))[ \t]+(?P<md_d>[0-9]{{1,2}})(?i:st|nd|rd|th)?,?[ \t]+"
    r"(?P<md_y>[12][0-9]{3})"
    r")(?![0-9]|[-/.][0-9])"
)
_EARLIEST_BIRTH_YEAR: Final = 1900

# US street address: number, one to four capitalised words (or an ordinal: 5th), a suffix, then optional
# directional, unit and "City, ST 12345".
_STRONG_STREET_SUFFIXES: Final = (
    r"Street|Avenue|Boulevard|Road|Lane|Drive|Parkway|Highway|Expressway|Freeway|Turnpike"
)
_ABBREVIATED_STREET_SUFFIXES: Final = (
    r"St|Ave|Av|Blvd|Rd|Ln|Dr|Pkwy|Hwy|Ct|Pl|Cir|Sq|Trl|Ter|Terr|Expy|Fwy|Tpke"
)
_WEAK_STREET_SUFFIXES: Final = (
    r"Court|Place|Way|Square|Circle|Trail|Terrace|Row|Close|Crescent|Alley|Walk|Plaza|Loop"
)
_ADDRESS_RE: Final = re.compile(
    r"(?<![\w.,/#-])(?P<number>[1-9][0-9]{0,5}(?:-[0-9]{1,4})?[A-Z]?)[ \t]+"
    r"(?:(?:N|S|E|W|NE|NW|SE|SW|North|South|East|West)\.?[ \t]+)?"
    r"(?:[A-Z][a-z'-]+|[0-9]{1,3}(?:st|nd|rd|th))"
    r"(?:[ \t]+(?:[A-Z][a-z'-]+|[A-Z]\.|Jr\.?|de|la|del)){0,3}[ \t]+"
    rf"(?:(?:{_STRONG_STREET_SUFFIXES})\b|(?:{_ABBREVIATED_STREET_SUFFIXES})\b\.?"
    rf"|(?P<weak>{_WEAK_STREET_SUFFIXES})\b)(?![-'][A-Za-z])"
    r"(?:[ \t]+(?:N|S|E|W|NE|NW|SE|SW)\b\.?)?"
    r"(?P<unit>,?[ \t]+(?:Apt|Apartment|Suite|Ste|Unit|Fl|Floor|#)\.?[ \t]*#?[A-Za-z0-9-]{1,6}\b)?"
    r"(?P<locality>(?:,[ \t]*[A-Z][a-z]+(?:[ \t]+[A-Z][a-z]+){0,2})?,?[ \t]+[A-Z]{2}[ \t]+"
    r"[0-9]{5}(?:-[0-9]{4})?\b)?"
)
_ADDRESS_CUE: Final = re.compile(
    r"(?i)(?:address|addr\.|lives?\s+at|living\s+at|resides?\s+at|located\s+at|ship(?:ped)?\s+to"
    r"|mail(?:ed)?\s+to|send\s+to|deliver(?:ed)?\s+to|visit\s+us\s+at|home:|office:)\s*[:\-]?\s*$"
)
# A number that counts or labels something is not a house number: "Chapter 12 Kings Road".
_NUMBERED_CONTEXT: Final = re.compile(
    r"(?i)\b(?:chapter|ch\.|section|page|p\.|book|part|act|scene|verse|canto|volume|vol\.|no\.|number|#)"
    r"\s*$"
)
# A house number read as a year: "In 1247 Ember Court fell", "by 1890 Market Street had ...".
_YEAR_CONTEXT: Final = re.compile(
    r"(?i)\b(?:in|by|since|until|till|from|of|year|circa|c\.|around|before|after)\s*$"
)

# Runs of digit groups joined by single spaces, dashes or dots; layout, issuer and Luhn are checked in code.
_CARD_RE: Final = re.compile(r"(?<![\w.,/+-])[0-9]{1,19}(?:[ .-][0-9]{1,19})*(?!\w|[.,/-][0-9])")

_CARD_SEPARATOR: Final = re.compile(r"[ .-]")

_IBAN_RE: Final = re.compile(r"(?<![A-Za-z0-9])[A-Za-z]{2}[0-9]{2}(?:[ -]?[A-Za-z0-9]){11,30}(?![A-Za-z0-9])")
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
# Neither kind starts inside a run of digit groups (the tail of a card number, a ledger entry).
_PHONE_NANP_RE: Final = re.compile(
    r"(?<![\w+./-])(?<![0-9][ .-])(?:1[ .-])?(?:\([2-9][0-9]{2}\) ?|[2-9][0-9]{2}(?P<sep>[ .-]))[2-9][0-9]{2}"
    r"(?(sep)(?P=sep)|[ .-])[0-9]{4}(?!\w|[.-][0-9])"
)
_PHONE_TRUNK_RE: Final = re.compile(
    r"(?<![\w+./-])(?<![0-9][ .-])(?:\(0[1-9][0-9]{0,3}\)|0[1-9][0-9]{0,3})(?:[ -][0-9]{2,8}){1,4}"
    r"(?!\w|[./-][0-9])"
)
_PHONE_NEGATIVE_CONTEXT: Final = re.compile(
    r"(?i)(?:order|invoice|ref|reference|ticket|serial|sku|isbn|issn|tracking|part|model|batch|lot|#"
    r"|(?:vault|door|gate|lock|safe|access|cipher|rune|seal)\s+code|combination|cipher)"
    r"\s*(?:no\.?|number|is)?\s*[:#.]?\s*$"
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


@lru_cache(maxsize=2)
def _lowered(text: str) -> str:
    # Several finders gate on lowercase cues; lowering a large document once per detection round is enough.
    return text.lower()


def _preceded_by(text: str, start: int, pattern: re.Pattern[str]) -> bool:
    return pattern.search(text, max(0, start - _CONTEXT_WINDOW), start) is not None


# Literal markers a pattern cannot match without: a substring test (C speed) skips a full regex scan.
_GITHUB_PREFIXES: Final = ("ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_")


def _find_emails(text: str) -> Iterator[tuple[int, int]]:
    if "@" not in text:
        return
    for m in _EMAIL_RE.finditer(text):
        yield m.span()


def _has_letter_and_digit(value: str) -> bool:
    return any(ch.isdigit() for ch in value) and any(ch.isalpha() for ch in value)


def _find_api_keys(text: str) -> Iterator[tuple[int, int]]:
    if "AKIA" in text or "ASIA" in text:
        yield from (m.span() for m in _AWS_KEY_ID_RE.finditer(text))
    if "AIza" in text:
        yield from (m.span() for m in _GCP_KEY_RE.finditer(text))
    if any(prefix in text for prefix in _GITHUB_PREFIXES):
        yield from (m.span() for m in _GITHUB_TOKEN_RE.finditer(text))
    if any(prefix in text for prefix in _KEY_PREFIXES):
        for m in _PROVIDER_TOKEN_RE.finditer(text):
            if _has_letter_and_digit(m.group()):
                yield m.span()
    lowered = _lowered(text)
    if "secret" in lowered:
        yield from (m.span("value") for m in _AWS_SECRET_RE.finditer(text))
    if "bearer" in lowered or "authorization" in lowered:
        for m in _BEARER_RE.finditer(text):
            if _has_letter_and_digit(m.group("value")):
                yield m.span("value")


def _find_private_keys(text: str) -> Iterator[tuple[int, int]]:
    if "PRIVATE KEY" not in text:
        return
    for m in _PEM_BEGIN_RE.finditer(text):
        end_marker = f"-----END {m.group('kind')}-----"
        end = text.find(end_marker, m.end())
        if end >= 0:
            yield m.start(), end + len(end_marker)
        else:  # cut short: the base64 body runs to the next blank line
            blank = _BLANK_LINE_RE.search(text, m.end())
            yield m.start(), blank.start() if blank else len(text.rstrip())


def _find_jwts(text: str) -> Iterator[tuple[int, int]]:
    if "eyJ" not in text:
        return
    for m in _JWT_RE.finditer(text):
        header = m.group("header")
        try:
            decoded = json.loads(base64.urlsafe_b64decode(header + "=" * (-len(header) % 4)))
        except (ValueError, binascii.Error, RecursionError):
            continue
        if isinstance(decoded, dict):
            yield m.span()


def _password_value(text: str, m: re.Match[str]) -> tuple[int, int] | None:
    key_start = m.start()
    while key_start > 0 and text[key_start - 1] in _KEY_CHARACTERS:
        key_start -= 1
    prefix = text[key_start : m.start()]
    if prefix and prefix[-1].isalnum():
        return None  # inside a longer word ("mountainpass:")
    compound = any(ch.isalnum() for ch in prefix)  # db_password, x-api-key; not --password
    group = "dq" if m.group("dq") is not None else "sq" if m.group("sq") is not None else "bare"
    start, end = m.span(group)
    value = m.group(group)
    token = _TOKEN_RE.search(value)
    if token is not None:  # already scrubbed (or a token pasted in): keep the value before it
        end = start + token.start()
        value = value[: token.start()]
    elif group == "bare":  # sentence punctuation after a bare value
        stripped = value.rstrip(_TRAILING_PUNCTUATION)
        end -= len(value) - len(stripped)
        value = stripped
    if not value.strip():
        return None
    return (start, end) if _looks_secret(compound, m.group("word"), value) else None


def _find_passwords(text: str) -> Iterator[tuple[int, int]]:
    lowered = _lowered(text)
    if any(marker in lowered for marker in _PASSWORD_MARKERS):
        for m in _PASSWORD_RE.finditer(text):
            span = _password_value(text, m)
            if span is not None:
                yield span
    if "://" in text:
        yield from (m.span("value") for m in _URL_PASSWORD_RE.finditer(text))


def _looks_secret(compound: bool, word: str, value: str) -> bool:
    """Whether `value` under a key ending in the secret `word` is a secret (bare weak words: generated)."""
    weak = not compound and word.lower() in _WEAK_SECRET_WORDS
    return not weak or (len(value) >= 6 and _has_letter_and_digit(value))


def is_secret_field(key: str, value: str) -> bool:
    """Whether a field named `key` holding `value` is a secret, by the rule of ``key: value`` in text."""
    m = _SECRET_KEY_RE.fullmatch(key.strip())
    value = value.strip()
    return (
        m is not None
        and bool(value)
        and not _TOKEN_RE.fullmatch(value)
        and _looks_secret(m.group("prefix") is not None, m.group("word"), value)
    )


def _valid_date(year: int, month: int, day: int) -> bool:
    try:
        date(year, month, day)
    except ValueError:
        return False
    return True


def _birth_date_ok(m: re.Match[str]) -> bool:
    if m.group("iso_y"):
        year, month, day = int(m.group("iso_y")), int(m.group("iso_m")), int(m.group("iso_d"))
        return year >= _EARLIEST_BIRTH_YEAR and _valid_date(year, month, day)
    if m.group("num_y"):
        year = int(m.group("num_y"))
        if len(m.group("num_y")) == 2:
            year += 1900 if year > 30 else 2000
        if year < _EARLIEST_BIRTH_YEAR:
            return False
        a, b = int(m.group("n1")), int(m.group("n2"))
        return _valid_date(year, b, a) or _valid_date(year, a, b)  # day-month or month-day
    if m.group("dm_y"):
        day, name, year = int(m.group("dm_d")), m.group("dm_m"), int(m.group("dm_y"))
    else:
        day, name, year = int(m.group("md_d")), m.group("md_m"), int(m.group("md_y"))
    month = _MONTHS[name[:3].lower()]
    return year >= _EARLIEST_BIRTH_YEAR and _valid_date(year, month, day)


def _find_dates_of_birth(text: str) -> Iterator[tuple[int, int]]:
    lowered = _lowered(text)
    if not any(cue in lowered for cue in ("born", "dob", "d.o.b", "birth")):
        return
    for m in _DOB_RE.finditer(text):
        if _birth_date_ok(m):
            yield m.span("date")


def _find_addresses(text: str) -> Iterator[tuple[int, int]]:
    for m in _ADDRESS_RE.finditer(text):
        if _preceded_by(text, m.start(), _YEAR_CONTEXT) and len(m.group("number")) in (3, 4):
            continue
        if _preceded_by(text, m.start(), _NUMBERED_CONTEXT):
            continue
        if m.group("weak") and not (
            m.group("unit") or m.group("locality") or _preceded_by(text, m.start(), _ADDRESS_CUE)
        ):
            continue
        yield m.span()


def _find_cards(text: str) -> Iterator[tuple[int, int]]:
    for m in _CARD_RE.finditer(text):
        run = m.group()
        if len(run) < 13:
            continue
        separators = {ch for ch in run if ch in " .-"}
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
        expected = _IBAN_LENGTHS.get(m.group()[:2].upper())
        if expected is None:
            continue
        # The candidate may run into following capitals: cut it at the country's length.
        run = m.group()
        seen = 0
        cut = -1
        for i, ch in enumerate(run):
            if ch not in " -":
                seen += 1
                if seen == expected:
                    cut = i + 1
                    break
        if cut < 0 or (cut < len(run) and run[cut] not in " -"):
            continue
        candidate = run[:cut]
        separators = {ch for ch in candidate if ch in " -"}
        if len(separators) > 1:
            continue
        compact = candidate.replace(" ", "").replace("-", "").upper()
        if separators:
            (separator,) = separators
            groups = separator.join(compact[i : i + 4] for i in range(0, len(compact), 4))
            if candidate.upper() != groups:
                continue
        if _iban_ok(compact):
            yield m.start(), m.start() + cut


def _find_national_ids(text: str) -> Iterator[tuple[int, int]]:
    for m in _SSN_RE.finditer(text):
        yield m.span()
    lowered = _lowered(text)
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
    PRIVATE_KEY: _find_private_keys,
    JWT: _find_jwts,
    API_KEY: _find_api_keys,
    PASSWORD: _find_passwords,
    EMAIL: _find_emails,
    IBAN: _find_ibans,
    CARD: _find_cards,
    NATIONAL_ID: _find_national_ids,
    DATE_OF_BIRTH: _find_dates_of_birth,
    ADDRESS: _find_addresses,
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
            if "[" in text[start:end] and _TOKEN_RE.search(text, start, end):
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


def _add_counts(totals: dict[str, int], counts: dict[str, int]) -> None:
    for category, n in counts.items():
        totals[category] = totals.get(category, 0) + n


def scrub_value(value: Any, *, key: str = "", totals: dict[str, int] | None = None) -> Any:
    """A JSON-like value (front matter metadata, event attributes) with every string in it scrubbed.

    Mapping keys are scrubbed too, and a scalar under a key that names a secret (``password``,
    ``api_key``, see `is_secret_field`) is replaced whole by ``[PASSWORD]``. Numbers are checked as their
    digits (a YAML ``phone: 4155550132`` is an integer) and become the scrubbed string only when something
    is found. Findings are added to `totals` when given.
    """
    counts = totals if totals is not None else {}
    if isinstance(value, dict):
        cleaned: dict[str, Any] = {}
        for k, v in value.items():
            name = scrub(str(k))
            _add_counts(counts, name.counts)
            unique = name.text
            n = 2
            while unique in cleaned:  # two keys scrubbed to one token keep both values
                unique, n = f"{name.text} ({n})", n + 1
            cleaned[unique] = scrub_value(v, key=str(k), totals=counts)
        return cleaned
    if isinstance(value, list | tuple):
        return [scrub_value(v, key=key, totals=counts) for v in value]
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, str | int | float) and key and is_secret_field(key, str(value)):
        _add_counts(counts, {PASSWORD: 1})
        return f"[{PASSWORD}]"
    if isinstance(value, str):
        result = scrub(value)
    elif isinstance(value, int | float):
        result = scrub(str(value))
        if not result.counts:
            return value
    else:
        return value
    _add_counts(counts, result.counts)
    return result.text


def scrub_sections(sections: Sequence[Section]) -> tuple[tuple[Section, ...], dict[str, int]]:
    """Scrub each section's text and heading; the sections keep their source `start`/`end` and gain
    `replacements` (for the text: a heading is not cited by offset).

    Positions inside a scrubbed section's text map back to source offsets with `Section.source_offset`.
    Returns the sections and the total count of findings per category.
    """
    totals: dict[str, int] = {}
    scrubbed: list[Section] = []
    headings: dict[str, ScrubResult] = {}  # sections under one heading path share it
    for section in sections:
        if section.heading not in headings:
            headings[section.heading] = scrub(section.heading)
        heading = headings[section.heading]
        _add_counts(totals, heading.counts)
        if heading.counts:
            section = dataclasses.replace(section, heading=heading.text)
        result = scrub(section.text)
        _add_counts(totals, result.counts)
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
        scrubbed.append(Section(heading.text, result.text, section.start, section.end, tuple(replacements)))
    return tuple(scrubbed), totals


def _forward(pos: int, result: ScrubResult) -> int:
    """Position in `result.text` of position `pos` (outside findings) of the text that was scrubbed."""
    i = bisect_right(result.replacements, pos, key=lambda r: r.source_end) - 1
    return pos if i < 0 else pos + result.replacements[i].end - result.replacements[i].source_end
