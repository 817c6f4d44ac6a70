"""A CSV's bytes as lines of text: split on any line ending and decoded one line at a time, so a
bad byte, a NUL or a line too long is an ``InputError`` naming its own line, and memory never
holds more than one (bounded) line."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import BinaryIO

from omneo_status.errors import InputError

MAX_CELL_CHARS = 100_000
"""Longer cells (and longer lines) are refused: no CSV of email addresses has them."""

DELIMITERS = (",", ";", "\t")
"""The delimiters the reader recognises, in the order that breaks a tie when sniffing."""

UTF8_HINT = "Save the file as UTF-8 (in Excel: 'CSV UTF-8')."

_BOM = b"\xef\xbb\xbf"
# What the first bytes of a file that is not a UTF-8 CSV say it is.
_SIGNATURES = (
    (b"\xff\xfe", "a UTF-16 file (it starts with a UTF-16 byte order mark)", UTF8_HINT),
    (b"\xfe\xff", "a UTF-16 file (it starts with a UTF-16 byte order mark)", UTF8_HINT),
)
_SIGNATURE_BYTES = 4
_CHUNK_BYTES = 1 << 16
# A UTF-8 character takes at most 4 bytes, so a line this long cannot fit in MAX_CELL_CHARS.
_MAX_LINE_BYTES = 4 * MAX_CELL_CHARS
_EOL = re.compile(rb"\r\n|\r|\n")
_EOL_BYTE = re.compile(rb"[\r\n]")
_CONTINUATION_BYTES = bytes(range(0x80, 0xC0))


def decoded_lines(stream: BinaryIO, name: str, head: bytes = b"") -> Iterator[str]:
    """The file's physical lines as text, each ending in "\\n" whatever the file used; ``head``
    is what was read of the file already.

    Lines are split on LF, CRLF or a lone CR and decoded one at a time, so a bad byte is reported
    with its own line number and memory never holds more than one (bounded) line.
    """
    for number, raw in enumerate(_raw_lines(stream, name, head), start=1):
        yield _decode_line(raw, name=name, line=number) + "\n"


def _raw_lines(stream: BinaryIO, name: str, head: bytes) -> Iterator[bytes]:
    pending = _file_start(stream, name, head)
    number = 0
    eof = False
    while not eof:
        chunk = stream.read(_CHUNK_BYTES)
        eof = not chunk
        pending += chunk
        start = 0
        for match in _EOL.finditer(pending):
            if match.group() == b"\r" and match.end() == len(pending) and not eof:
                break  # may be the first half of a CRLF split between two reads
            number += 1
            yield pending[start : match.start()]
            start = match.end()
        pending = pending[start:]
        if len(pending) > _MAX_LINE_BYTES:
            raise _line_too_long(stream, pending, name=name, line=number + 1)
    if pending:
        yield pending


def _file_start(stream: BinaryIO, name: str, start: bytes) -> bytes:
    """The first bytes of the stream (after ``start``, those read already), without a UTF-8
    byte order mark.

    A file whose first bytes say it is UTF-16 is refused here, before any line is decoded (it
    would otherwise read as a bad byte). A workbook never gets here: ``inputs.read_rows`` reads
    it as one (:mod:`omneo_status.sheets`).
    """
    while len(start) < _SIGNATURE_BYTES:
        chunk = stream.read(_SIGNATURE_BYTES - len(start))
        if not chunk:
            break
        start += chunk
    for signature, what, hint in _SIGNATURES:
        if start.startswith(signature):
            raise InputError(f"{name}: this looks like {what}", hint=hint)
    return start.removeprefix(_BOM)


def _decode_line(raw: bytes, *, name: str, line: int) -> str:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        column = len(raw[: error.start].decode("utf-8", "replace")) + 1
        raise InputError(
            f"{name}, line {line}: not valid UTF-8 "
            f"(byte 0x{raw[error.start]:02X} at column {column})",
            hint=UTF8_HINT,
        ) from error
    if "\x00" in text:
        raise InputError(
            f"{name}, line {line}: a NUL byte at column {text.index(chr(0)) + 1}",
            hint="Is this a UTF-16 file? " + UTF8_HINT,
        )
    if len(text) > MAX_CELL_CHARS:
        raise too_long(name=name, line=line, chars=len(text), one_cell=not _has_delimiter(text))
    return text


def _line_too_long(stream: BinaryIO, start: bytes, *, name: str, line: int) -> InputError:
    """The error for a line too long to hold; reads the rest of it to say how long it is."""
    chars = _count_chars(start.removesuffix(b"\r"))
    while True:
        rest = stream.read(_CHUNK_BYTES)
        end = _EOL_BYTE.search(rest)
        chars += _count_chars(rest[: end.start()] if end else rest)
        if end or not rest:
            break
    return too_long(name=name, line=line, chars=chars, one_cell=not _has_delimiter(start))


def _count_chars(data: bytes) -> int:
    """Characters in UTF-8 bytes: every byte except a continuation byte starts one."""
    return len(data.translate(None, _CONTINUATION_BYTES))


def _has_delimiter(text: str | bytes) -> bool:
    if isinstance(text, bytes):
        return any(delimiter.encode() in text for delimiter in DELIMITERS)
    return any(delimiter in text for delimiter in DELIMITERS)


def too_long(
    *, name: str, line: int, chars: int, one_cell: bool, hint: str | None = None
) -> InputError:
    """The error for a cell (or a line) of ``chars`` characters, over :data:`MAX_CELL_CHARS`."""
    what = "a cell" if one_cell else "a line"
    return InputError(
        f"{name}, line {line}: {what} of {chars:,} characters: is this a CSV of email addresses?",
        hint=hint or f"Cells and lines are limited to {MAX_CELL_CHARS:,} characters.",
    )
