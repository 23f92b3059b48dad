"""``ingest._io.sniff_text`` (the canonical reader's encoding sniff that skips decoding an
ASCII file) gives what ``decode_bytes`` + ``first_line`` give: same encoding, same header
line, same error, on hand-picked edge cases and on random byte strings made of the pieces
the checks look at (whitespace that only ``str`` counts, HTML, NUL, magic numbers, BOMs,
non-ASCII bytes)."""

from __future__ import annotations

import random

import pytest

from analysis.errors import InputFileError
from analysis.ingest._io import decode_bytes, first_line, sniff_text

PIECES = (b" ", b"\t", b"\n", b"\r", b"\x0b", b"\x0c", b"\x1c", b"\x1f", b"a", b",", b";",
          b"<html>", b"<!DOCTYPE", b"<?xml", b"\x00", b"PK\x03\x04", b"%PDF", b"PAR1",
          b"x", b"\xc3\xa9", b"\xef\xbb\xbf", b"\xff\xfe", b"\x80")
EDGE = (b"", b" ", b"\x1c\x1d", b"\n\n a,b\nc", b"<html>", b"  \n<HTML>x", b"a,b\r\nc",
        b"\x1ca,b\n1,2", b"\n\x1f\nrunner_id,date\nR1,2025-01-01\n", b"a" * 2000 + b"<html")


def _reference(data: bytes) -> tuple[str, str]:
    try:
        text, encoding = decode_bytes(data, file="f.csv")
    except InputFileError as error:
        return "error", str(error)
    return encoding, first_line(text)


def _sniffed(data: bytes) -> tuple[str, str]:
    try:
        text, encoding, line = sniff_text(data, file="f.csv")
    except InputFileError as error:
        return "error", str(error)
    if text is not None:
        assert line == first_line(text)
    return encoding, line


@pytest.mark.parametrize("data", EDGE)
def test_sniff_text_edge_cases(data):
    assert _sniffed(data) == _reference(data)


def test_sniff_text_agrees_on_random_bytes():
    rng = random.Random(11)
    cases = [b"".join(rng.choice(PIECES) for _ in range(rng.randint(0, 14)))
             for _ in range(20_000)]
    assert any(c.isascii() and c.strip() for c in cases)  # the ASCII path is exercised
    differ = [c for c in cases if _sniffed(c) != _reference(c)]
    assert differ == []


def test_ascii_file_is_not_decoded():
    text, encoding, line = sniff_text(b"\n runner_id,date\nR1,2025-01-01\n", file="f.csv")
    assert (text, encoding, line) == (None, "UTF-8", " runner_id,date")


def test_truncated_utf16_is_one_input_error():
    with pytest.raises(InputFileError, match="UTF-16 byte-order mark but is not UTF-16"):
        decode_bytes(b"\xff\xfea\x00b", file="f.csv")
