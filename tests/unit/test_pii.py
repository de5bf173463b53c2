"""PII and secret detection (shared.compliance.pii): each detector, negatives, redaction."""

from __future__ import annotations

import pytest

from shared.compliance.pii import Detector, Finding, sensitivity_tags, shannon_entropy

pytestmark = pytest.mark.unit

D = Detector(phone_region="US")


def kinds(text: str, detector: Detector = D) -> list[tuple[str, str, str]]:
    return [(f.kind, f.detail, text[f.start : f.end]) for f in detector.scan(text)]


@pytest.mark.parametrize(
    ("text", "kind", "detail", "value"),
    [
        ("write to ana.silva+x@mail.example.pt today", "email", "", "ana.silva+x@mail.example.pt"),
        ("call me on +1 415-555-2671 tonight", "phone", "", "+1 415-555-2671"),
        ("card 4111 1111 1111 1111, exp 12/29", "card", "", "4111 1111 1111 1111"),
        ("paid with 5500-0000-0000-0004", "card", "", "5500-0000-0000-0004"),
        ("IBAN GB82 WEST 1234 5698 7654 32 THANKS", "iban", "", "GB82 WEST 1234 5698 7654 32"),
        ("to DE89370400440532013000.", "iban", "", "DE89370400440532013000"),
        ("SSN 536-90-4399 on file", "national_id", "us_ssn", "536-90-4399"),
        ("NIR 2 95 10 99 126 111 93", "national_id", "fr_nir", "2 95 10 99 126 111 93"),
        ("DNI 54362315K", "national_id", "es_dni", "54362315K"),
        ("CF RCCMNL83S18D969H", "national_id", "it_codice_fiscale", "RCCMNL83S18D969H"),
        ("BSN 111222333", "national_id", "nl_bsn", "111222333"),
        ("IdNr 36574261809", "national_id", "de_idnr", "36574261809"),
        ("aws AKIAIOSFODNN7EXAMPLE here", "token", "aws_access_key", "AKIAIOSFODNN7EXAMPLE"),
        ("tok ghp_" + "a1B2" * 9, "token", "github", "ghp_" + "a1B2" * 9),
        ("glpat-abcdefghij0123456789 x", "token", "gitlab", "glpat-abcdefghij0123456789"),
        ("xoxb-123456789012-abcdefABCDEF", "token", "slack", "xoxb-123456789012-abcdefABCDEF"),
        ("sk_live_4eC39HqLyjWDarjtT1zdp7dc", "token", "stripe", "sk_live_4eC39HqLyjWDarjtT1zdp7dc"),
        (
            "key mg_0123456789ab_abcdefghijklmnopqrstuvwxyz end",
            "token",
            "memgrid",
            "mg_0123456789ab_abcdefghijklmnopqrstuvwxyz",
        ),
        ('config: api_key="Zx9qLm2Pw8Rt5Vn1Kc7"', "token", "assignment", "Zx9qLm2Pw8Rt5Vn1Kc7"),
    ],
)
def test_detects_each_kind(text: str, kind: str, detail: str, value: str) -> None:
    assert kinds(text) == [(kind, detail, value)]


def test_jwt_needs_a_json_header_with_alg() -> None:
    jwt = (
        "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0."
        "dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U"
    )
    assert kinds(f"bearer {jwt}") == [("token", "jwt", jwt)]
    fake = "eyJub3Rqc29u.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N"
    assert [k for k, _, _ in kinds(fake)] == []


def test_pem_private_key_block_is_one_finding() -> None:
    pem = "-----BEGIN RSA PRIVATE KEY-----\nMIIEow 123 456\n-----END RSA PRIVATE KEY-----"
    assert kinds(f"here:\n{pem}\nbye") == [("private_key", "pem", pem)]
    # A public key is not a secret.
    assert kinds("-----BEGIN PUBLIC KEY-----\nMIIB\n-----END PUBLIC KEY-----") == []


@pytest.mark.parametrize(
    "text",
    [
        "card 4111 1111 1111 1112",  # 16 digits, Luhn fails
        "order number 1234567890123456",  # Luhn fails
        "bad GB83 WEST 1234 5698 7654 32",  # IBAN checksum wrong
        "DE89370400440532013001",  # IBAN checksum wrong
        "SSN 000-12-3456",  # area 000 is never issued
        "DNI 54362315A",  # wrong control letter
        "BSN 111222334",  # fails the 11-proof
        "password = hellohellohello",  # low entropy: a word, not a token
        "api_key = <your key here>",
        "AKIA is a prefix, AKIAshort is not a key",
        "meet at 10:30 on 2024-03-02 in room 42",
        "version 3.11.4 released",
        "I moved to Lisbon yesterday",
        "user@localhost is not an address",
    ],
)
def test_negatives(text: str) -> None:
    assert kinds(text) == []


def test_phone_numbers_use_the_default_region() -> None:
    local = "ring 020 7946 0958 please"
    assert kinds(local, Detector(phone_region="US")) == []
    assert kinds(local, Detector(phone_region="GB")) == [("phone", "", "020 7946 0958")]


def test_overlap_keeps_the_stronger_kind() -> None:
    # The card number's digits also read as other things; it is one card finding.
    assert [k for k, _, _ in kinds("4111111111111111")] == ["card"]


def test_several_findings_in_order_and_tags() -> None:
    text = "Ana (ana@example.com, +1 415-555-2671) token ghp_" + "x" * 36
    found = D.scan(text)
    assert [f.kind for f in found] == ["email", "phone", "token"]
    assert [f.start for f in found] == sorted(f.start for f in found)
    assert sensitivity_tags(found) == ["pii:email", "pii:phone", "secret:token"]


def test_redact_replaces_only_the_findings() -> None:
    text = "mail ana@example.com, card 4111 1111 1111 1111, api_key=Zx9qLm2Pw8Rt5Vn1Kc7 end"
    assert D.redact(text) == (
        "mail [REDACTED:email], card [REDACTED:card], api_key=[REDACTED:token] end"
    )
    assert D.redact("nothing to see") == "nothing to see"


def test_redact_with_given_findings() -> None:
    assert D.redact("abcdef", [Finding("email", 1, 3)]) == "a[REDACTED:email]def"


def test_entropy() -> None:
    assert shannon_entropy("") == 0.0
    assert shannon_entropy("aaaa") == 0.0
    assert shannon_entropy("abcd") == pytest.approx(2.0)
    assert D.secret_min_entropy == 3.5
    strict = Detector(secret_min_entropy=0.5)
    assert [k for k, _, _ in kinds("password = hellohellohello", strict)] == ["token"]
