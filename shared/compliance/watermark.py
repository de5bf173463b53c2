"""Invisible watermarks on exported text: the export id in zero-width characters.

Each mark is START, 160 bits (the export id's 16 bytes and a CRC-32 of them) as
ZERO WIDTH SPACE (0) / ZERO WIDTH NON-JOINER (1), then END. The mark goes after
the first character and again after a space every ``EVERY`` characters, so a
snippet copied out of a longer text still carries it. Stripping the four code
points gives back the original text exactly.

Written here rather than taken from a library: the zero-width steganography
packages on PyPI are small, unmaintained one-offs, and this is a few lines whose
format must stay stable for decoding old leaks.
"""

from __future__ import annotations

import re
import uuid
import zlib

ZERO = "\u200b"  # ZERO WIDTH SPACE
ONE = "\u200c"  # ZERO WIDTH NON-JOINER
START = "\u2063"  # INVISIBLE SEPARATOR
END = "\u2064"  # INVISIBLE PLUS
EVERY = 80
PREFIX = "exp_"
_MARK = re.compile(f"{START}([{ZERO}{ONE}]{{160}}){END}")
_INVISIBLE = str.maketrans("", "", ZERO + ONE + START + END)


def new_export_id() -> str:
    return PREFIX + uuid.uuid4().hex


def _raw(export_id: str) -> bytes:
    if not export_id.startswith(PREFIX):
        raise ValueError(f"not an export id: {export_id!r}")
    return uuid.UUID(hex=export_id[len(PREFIX) :]).bytes


def mark(export_id: str) -> str:
    """The invisible mark of ``export_id``."""
    raw = _raw(export_id)
    payload = raw + zlib.crc32(raw).to_bytes(4, "big")
    bits = "".join(f"{byte:08b}" for byte in payload)
    return START + bits.replace("0", ZERO).replace("1", ONE) + END


def embed(text: str, export_id: str) -> str:
    """``text`` with the mark after its first character and after a space every
    ``EVERY`` characters; an empty text stays empty."""
    if not text:
        return text
    m = mark(export_id)
    out = [text[0], m]
    last = 1
    for i in range(1, len(text)):
        out.append(text[i])
        if text[i] == " " and i - last >= EVERY:
            out.append(m)
            last = i
    return "".join(out)


def strip(text: str) -> str:
    """``text`` without any watermark character."""
    return text.translate(_INVISIBLE)


def decode(text: str) -> list[str]:
    """The distinct export ids whose intact marks ``text`` carries, in order found."""
    found: list[str] = []
    for m in _MARK.finditer(text):
        bits = m.group(1).replace(ZERO, "0").replace(ONE, "1")
        payload = int(bits, 2).to_bytes(20, "big")
        raw, crc = payload[:16], payload[16:]
        if zlib.crc32(raw).to_bytes(4, "big") != crc:
            continue  # damaged: a bit lost in copying must not name another export
        export_id = PREFIX + uuid.UUID(bytes=raw).hex
        if export_id not in found:
            found.append(export_id)
    return found
