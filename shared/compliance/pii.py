"""PII and secret detection: what personal data or credentials a text holds, and where.

Used at ingest by the vault (tags, redaction, rejection) and by the governance
scanner (counts). A finding is a kind and a span, never the value: callers must
not log what a span covers.

Detectors:

* e-mail addresses (regex);
* phone numbers: ``phonenumbers.PhoneNumberMatcher`` (libphonenumber's rules:
  only numbers valid for their region), numbers without a country code read in
  the configured default region;
* card numbers: 13-19 digits (spaces or dashes between groups) passing the Luhn
  check (``stdnum.luhn``);
* IBANs: country code, check digits and BBAN, validated by ``stdnum.iban``
  (country length and mod-97 checksum);
* national ids: candidates by regex, validated by stdnum: US SSN, FR NIR, ES DNI,
  IT codice fiscale, NL BSN, DE IdNr;
* secrets: AWS access key ids, GitHub, GitLab, Slack and Stripe tokens, JWTs,
  PEM private keys, memgrid API keys and ``api_key = ...`` style assignments
  whose value looks random (Shannon entropy per character).

The secret patterns are a handful of regexes written here rather than a scanner
library: detect-secrets and similar tools scan files through plugin registries
and global settings and report lines, while ingest needs character spans in one
string to redact in place.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import phonenumbers
from stdnum import iban, luhn
from stdnum.de import idnr
from stdnum.es import dni
from stdnum.fr import nir
from stdnum.it import codicefiscale
from stdnum.nl import bsn
from stdnum.us import ssn

PII = "pii"
SECRET = "secret"

# Kinds (the part after ``pii:`` / ``secret:`` in a sensitivity tag).
EMAIL = "email"
PHONE = "phone"
CARD = "card"
IBAN = "iban"
NATIONAL_ID = "national_id"
TOKEN = "token"
PRIVATE_KEY = "private_key"

_CATEGORY = {
    EMAIL: PII,
    PHONE: PII,
    CARD: PII,
    IBAN: PII,
    NATIONAL_ID: PII,
    TOKEN: SECRET,
    PRIVATE_KEY: SECRET,
}
# When two findings overlap the one of the earlier kind here wins: a secret
# often contains digit runs, and a card number can also read as a phone number.
_PRIORITY = [PRIVATE_KEY, TOKEN, CARD, IBAN, NATIONAL_ID, EMAIL, PHONE]
KINDS = tuple(_PRIORITY)


@dataclass(frozen=True)
class Finding:
    """``kind`` found at ``text[start:end]``; ``detail`` narrows it (``us_ssn``, ``github``)."""

    kind: str
    start: int
    end: int
    detail: str = ""

    @property
    def category(self) -> str:
        return _CATEGORY[self.kind]

    @property
    def tag(self) -> str:
        """The cube's sensitivity tag, e.g. ``pii:email`` or ``secret:token``."""
        return f"{self.category}:{self.kind}"


def redaction_marker(kind: str) -> str:
    return f"[REDACTED:{kind}]"


def sensitivity_tags(findings: Iterable[Finding]) -> list[str]:
    """The distinct tags of ``findings``, sorted."""
    return sorted({f.tag for f in findings})


# --- regexes ----------------------------------------------------------------------

_EMAIL = re.compile(
    r"(?<![\w.%+-])[A-Za-z0-9][A-Za-z0-9._%+-]{0,63}@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,24}(?![\w-])"
)
_CARD = re.compile(r"(?<![\d-])\d(?:[ -]?\d){12,18}(?![\d-])")
_IBAN = re.compile(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,4})?\b")

_NATIONAL: list[tuple[str, re.Pattern[str], Callable[[str], bool]]] = [
    ("us_ssn", re.compile(r"(?<![\d-])\d{3}-\d{2}-\d{4}(?![\d-])"), ssn.is_valid),
    (
        "fr_nir",
        re.compile(r"(?<!\d)[12] ?\d{2} ?\d{2} ?(?:\d{2}|2[AB]) ?\d{3} ?\d{3} ?\d{2}(?!\d)"),
        nir.is_valid,
    ),
    ("es_dni", re.compile(r"(?<![\w-])\d{8}-?[A-Za-z](?!\w)"), dni.is_valid),
    (
        "it_codice_fiscale",
        re.compile(r"\b[A-Z]{6}\d{2}[A-Z]\d{2}[A-Z]\d{3}[A-Z]\b"),
        codicefiscale.is_valid,
    ),
    ("nl_bsn", re.compile(r"(?<![\d.-])\d{9}(?![\d-])"), bsn.is_valid),
    ("de_idnr", re.compile(r"(?<!\d)\d{2} ?\d{3} ?\d{3} ?\d{3}(?!\d)"), idnr.is_valid),
]

_TOKENS: list[tuple[str, re.Pattern[str]]] = [
    ("aws_access_key", re.compile(r"\b(?:AKIA|ASIA|ABIA|ACCA)[A-Z0-9]{16}\b")),
    (
        "github",
        re.compile(r"\b(?:gh[pousr]_[A-Za-z0-9]{36,255}|github_pat_[A-Za-z0-9_]{22,255})\b"),
    ),
    ("gitlab", re.compile(r"\bgl(?:pat|dt|rt|ptt)-[A-Za-z0-9_-]{20,}")),
    ("slack", re.compile(r"\bxox[abposr]-[A-Za-z0-9-]{10,}")),
    (
        "slack_webhook",
        re.compile(r"https://hooks\.slack\.com/services/[A-Za-z0-9]+/[A-Za-z0-9]+/[A-Za-z0-9]+"),
    ),
    ("stripe", re.compile(r"\b(?:sk|rk)_(?:live|test)_[A-Za-z0-9]{16,}\b")),
    ("memgrid", re.compile(r"\bmg_[0-9a-f]{4,64}_[A-Za-z0-9_\-]{16,256}")),
]
_JWT = re.compile(r"\beyJ[A-Za-z0-9_-]{5,}\.eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{8,}")
_PEM = re.compile(
    r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY-----"
    r"(?:.*?-----END (?:[A-Z0-9]+ )*PRIVATE KEY-----|.*\Z)",
    re.DOTALL,
)
_ASSIGNMENT = re.compile(
    r"(?i)\b(?:api[_-]?key|apikey|secret(?:[_-]?key)?|access[_-]?key|auth[_-]?token|token"
    r"|passw(?:or)?d|pwd|client[_-]?secret|private[_-]?key)\b[\"']?\s*[:=]\s*[\"']?"
    r"(?P<value>[A-Za-z0-9_\-./+=~!@#$%^&*]{12,256})"
)


# --- the detectors ------------------------------------------------------------------


def _emails(text: str) -> Iterator[Finding]:
    for m in _EMAIL.finditer(text):
        yield Finding(EMAIL, m.start(), m.end())


def _phones(text: str, region: str) -> Iterator[Finding]:
    for m in phonenumbers.PhoneNumberMatcher(text, region):
        yield Finding(PHONE, m.start, m.end)


def _cards(text: str) -> Iterator[Finding]:
    for m in _CARD.finditer(text):
        digits = re.sub(r"[ -]", "", m.group())
        if 13 <= len(digits) <= 19 and luhn.is_valid(digits):
            yield Finding(CARD, m.start(), m.end())


def _ibans(text: str) -> Iterator[Finding]:
    for m in _IBAN.finditer(text):
        # The candidate may run into an uppercase word after the IBAN: try the
        # longest prefix first, then shorter ones ending on a group boundary.
        candidate = m.group()
        for end in range(len(candidate), 14, -1):
            if end < len(candidate) and candidate[end] != " ":
                continue
            if iban.is_valid(candidate[:end]):
                yield Finding(IBAN, m.start(), m.start() + end)
                break


def _national_ids(text: str) -> Iterator[Finding]:
    for detail, pattern, valid in _NATIONAL:
        for m in pattern.finditer(text):
            if valid(m.group()):
                yield Finding(NATIONAL_ID, m.start(), m.end(), detail)


def _jwt_header_ok(token: str) -> bool:
    head = token.split(".", 1)[0]
    try:
        header = json.loads(base64.urlsafe_b64decode(head + "=" * (-len(head) % 4)))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        return False
    return isinstance(header, dict) and "alg" in header


def shannon_entropy(value: str) -> float:
    """Bits per character of ``value``'s own character distribution."""
    if not value:
        return 0.0
    n = len(value)
    return -sum(c / n * math.log2(c / n) for c in Counter(value).values())


def _secrets(text: str, min_entropy: float) -> Iterator[Finding]:
    for m in _PEM.finditer(text):
        yield Finding(PRIVATE_KEY, m.start(), m.end(), "pem")
    for detail, pattern in _TOKENS:
        for m in pattern.finditer(text):
            yield Finding(TOKEN, m.start(), m.end(), detail)
    for m in _JWT.finditer(text):
        if _jwt_header_ok(m.group()):
            yield Finding(TOKEN, m.start(), m.end(), "jwt")
    for m in _ASSIGNMENT.finditer(text):
        value = m.group("value")
        if shannon_entropy(value) >= min_entropy:
            yield Finding(TOKEN, m.start("value"), m.end("value"), "assignment")


@dataclass(frozen=True)
class Detector:
    """Finds PII and secrets; configured once (``ComplianceSettings``), then stateless."""

    phone_region: str = "US"
    secret_min_entropy: float = 3.5

    def scan(self, text: str) -> list[Finding]:
        """Non-overlapping findings in text order (on overlap the stronger kind wins)."""
        found = [
            *_secrets(text, self.secret_min_entropy),
            *_cards(text),
            *_ibans(text),
            *_national_ids(text),
            *_emails(text),
            *_phones(text, self.phone_region),
        ]
        rank = {kind: i for i, kind in enumerate(_PRIORITY)}
        found.sort(key=lambda f: (rank[f.kind], f.start, -(f.end - f.start)))
        kept: list[Finding] = []
        for f in found:
            if all(f.end <= k.start or f.start >= k.end for k in kept):
                kept.append(f)
        return sorted(kept, key=lambda f: f.start)

    def redact(self, text: str, findings: Iterable[Finding] | None = None) -> str:
        """``text`` with each finding replaced by ``[REDACTED:<kind>]``."""
        spans = sorted(self.scan(text) if findings is None else findings, key=lambda f: f.start)
        out: list[str] = []
        pos = 0
        for f in spans:
            out.append(text[pos : f.start])
            out.append(redaction_marker(f.kind))
            pos = f.end
        out.append(text[pos:])
        return "".join(out)
