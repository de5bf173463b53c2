"""API keys: how they are made, stored and checked.

A key reads ``mg_<prefix>_<secret>``. The prefix (12 hex characters) is public and
finds the stored record; the secret (``secrets.token_urlsafe(32)``, 256 bits) is
never stored. The vault keeps ``sha256(full key)`` in hex: the secret is random
and long, so a slow password hash would add latency to every request and no
safety. Comparisons run in constant time on bytes (``hmac.compare_digest`` on
``str`` rejects non-ASCII input with a TypeError, and headers may carry any byte).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets

KEY_PREFIX = "mg"
_KEY_RE = re.compile(r"^mg_([0-9a-f]{4,64})_([A-Za-z0-9_\-]{16,256})$")


def hash_api_key(key: str) -> str:
    """sha256 hex digest of the full key, as the vault stores it."""
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


def generate_api_key() -> tuple[str, str, str]:
    """A fresh key: ``(key, prefix, key_hash)``. Show ``key`` once; store the other two."""
    prefix = secrets.token_hex(6)
    key = f"{KEY_PREFIX}_{prefix}_{secrets.token_urlsafe(32)}"
    return key, prefix, hash_api_key(key)


def parse_api_key(key: str) -> str | None:
    """The prefix of a well-formed key, or None. Does not say whether the key is valid."""
    if len(key) > 400:
        return None
    m = _KEY_RE.match(key)
    return m.group(1) if m else None


def constant_time_equals(a: str, b: str) -> bool:
    """Compares two strings in time independent of where they differ."""
    return hmac.compare_digest(
        a.encode("utf-8", "surrogatepass"), b.encode("utf-8", "surrogatepass")
    )


def verify_api_key(key: str, key_hash: str) -> bool:
    """Whether ``key`` hashes to ``key_hash`` (constant-time comparison)."""
    return constant_time_equals(hash_api_key(key), key_hash)
