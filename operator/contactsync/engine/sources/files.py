"""File sources: CSV and JSON Lines read from any binary stream.

Both sources stream: they hold one record (bounded by a byte limit) at a time, never
the file, so a 1 GB file reads in constant memory. They take an *opener*, a callable
returning a fresh binary stream (a local file from `open_path`, or an HTTPS response
body the engine wires in), and open it once per `batches()` call.

Neither source filters on `since` by default: a file carries no trustworthy change
feed, so every record is returned and the engine filters on `updatedAt` itself. The
engine builds its `CsvSource` with `skip_predating=True`, a shortcut that drops only
records the engine would certainly drop: a line without quotes, with the header's
number of cells, whose `updatedAt` cell `predates` `since`, is counted (positions do
not shift) but never built into a record. Every other record is returned.

Hostile input never raises and never shifts positions. A record the reader cannot
decode becomes a `RawRecord` with EMPTY fields (the offending bytes go no further)
and one of these reason codes, and reading continues with the next record:

- `encoding.invalid`: bytes that are not valid in the file's encoding.
- `record.malformed`: a NUL character (PostgreSQL text cannot store it, and in a text
  file it signals binary garbage, so the record is rejected rather than silently
  edited), a CSV row with the wrong number of columns, a quote the CSV grammar
  rejects or left open at end of file, a JSON line that is not a JSON object.
- `record.too_large`: a CSV field over `max_field_bytes`, a CSV record over
  `max_record_bytes` or a JSON line over `max_line_bytes`; the excess is skipped in
  bounded chunks, never held whole.

Blank lines are not records and are not counted. Lines end in LF or CRLF: a bare
CR outside quotes spoils its record, so a classic Mac OS file (CR line ends only)
reads as one line and fails on its header. I/O errors of the stream propagate.

A full read of a CSV file (no `since` to skip by) returns `CsvLines` batches: their
plain lines (no quotes, the header's number of cells, nothing the reader would
reject) stay as bytes until the batch is read, which the engine does in a worker
process; shipping bytes there costs a fraction of shipping parsed records.

Only a CSV file without a usable header row raises (`CsvHeaderError`): without
column names no record can be read.

Encoding: a UTF-32, UTF-16 or UTF-8 byte order mark selects that encoding and is
dropped; otherwise the file is UTF-8 unless `encoding` names another codec. Files
not in UTF-8 are transcoded to UTF-8 while streaming, so one line reader serves all.
"""

from __future__ import annotations

import codecs
import csv
import io
import json
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import UTC, datetime
from functools import partial
from itertools import chain, islice
from os import PathLike
from typing import TYPE_CHECKING, BinaryIO, NoReturn, overload

from contactsync import _native
from contactsync.engine.sources import RawRecord, predates

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer

__all__ = [
    "ENCODING_INVALID",
    "RECORD_MALFORMED",
    "RECORD_TOO_LARGE",
    "CsvHeaderError",
    "CsvLines",
    "CsvSource",
    "JsonlSource",
    "open_path",
]

ENCODING_INVALID = "encoding.invalid"
RECORD_MALFORMED = "record.malformed"
RECORD_TOO_LARGE = "record.too_large"

_CHUNK_BYTES = 64 * 1024

# Header spellings accepted for the engine's field names, compared after dropping
# spaces, '_' and '-' and case-folding ('First Name', 'first_name', 'E-Mail' ...).
# Kept short on purpose: an alias that could mean two things (title, mobile) is left
# out, and any column not listed here passes through under its own (stripped) name.
_ALIASES: dict[str, str] = {
    "externalid": "externalId",
    "id": "externalId",
    "contactid": "externalId",
    "email": "email",
    "emailaddress": "email",
    "phone": "phone",
    "phonenumber": "phone",
    "telephone": "phone",
    "firstname": "firstName",
    "givenname": "firstName",
    "lastname": "lastName",
    "surname": "lastName",
    "familyname": "lastName",
    "company": "company",
    "companyname": "company",
    "organization": "company",
    "organisation": "company",
    "jobtitle": "jobTitle",
    "updatedat": "updatedAt",
    "lastmodified": "updatedAt",
    "modifiedat": "updatedAt",
    "deleted": "deleted",
    "isdeleted": "deleted",
}
_ALIAS_NOISE = re.compile(r"[\s_\-]+")

# Checked longest first: the UTF-32 LE mark begins with the UTF-16 LE one.
_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)

_INVALID_ERRORS = "contactsync.files.invalid"


def _mark_invalid(error: UnicodeError) -> tuple[str, int]:
    # Transcoding to UTF-8 turns undecodable input into the lone surrogate U+DCFF,
    # which the 'surrogateescape' encoder writes as the byte 0xFF: never valid UTF-8,
    # so the line reader reports `encoding.invalid` for exactly that record.
    if not isinstance(error, UnicodeDecodeError):
        raise error
    return "\udcff", error.end


codecs.register_error(_INVALID_ERRORS, _mark_invalid)


def open_path(path: str | PathLike[str]) -> Callable[[], BinaryIO]:
    """An opener for a local file."""

    def opener() -> BinaryIO:
        # Unbuffered: the sources put their own buffer on top.
        return open(path, "rb", buffering=0)

    return opener


class _Utf8Stream(io.RawIOBase):
    """`head` then the rest of `source`, transcoded to UTF-8 when `decoder` is given.

    The head is what encoding detection already read. A CSV read takes blocks
    from here (`_Window`); JSON Lines puts a C `BufferedReader` on top.
    """

    def __init__(
        self, head: bytes, source: BinaryIO, decoder: codecs.IncrementalDecoder | None
    ) -> None:
        super().__init__()
        self._source = source
        self._decoder = decoder
        self._eof = False
        self._pending = self._convert(head)

    def _convert(self, data: bytes) -> bytes:
        if self._decoder is None:
            return data
        text = self._decoder.decode(data, final=self._eof)
        return text.encode("utf-8", "surrogateescape")

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: WriteableBuffer) -> int:
        view = memoryview(buffer).cast("B")
        data = self.read(len(view))
        view[: len(data)] = data
        return len(data)

    def read(self, size: int = -1) -> bytes:
        """Up to `size` bytes (a chunk for a negative size; none only at the end),
        without the copy `RawIOBase.read` makes: a CSV read's blocks."""
        while not self._pending:
            if self._eof:
                return b""
            chunk = self._source.read(max(size, _CHUNK_BYTES))
            self._eof = not chunk
            self._pending = self._convert(chunk)
        if 0 <= size < len(self._pending):
            data, self._pending = self._pending[:size], self._pending[size:]
        else:
            data, self._pending = self._pending, b""
        return data

    def close(self) -> None:
        try:
            self._source.close()
        finally:
            super().close()


def _read_up_to(source: BinaryIO, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = source.read(size - len(data))
        if not chunk:
            break
        data += chunk
    return data


def _open_utf8(source: BinaryIO, encoding: str | None) -> _Utf8Stream:
    """A stream of UTF-8 bytes, byte order mark removed."""
    head = _read_up_to(source, 4)
    if encoding is None:
        encoding = next((name for bom, name in _BOMS if head.startswith(bom)), "utf-8")
    decoder: codecs.IncrementalDecoder | None = None
    if codecs.lookup(encoding).name in ("utf-8", "utf-8-sig"):
        head = head.removeprefix(codecs.BOM_UTF8)
    else:
        # Other codecs consume their own byte order mark.
        decoder = codecs.getincrementaldecoder(encoding)(_INVALID_ERRORS)
    return _Utf8Stream(head, source, decoder)


class _Window:
    """A CSV read's view of its stream: the bytes from `start` of `data`.

    The native scans read them in place, for as many lines as they take, and
    `advance`; a line that runs past the end of `data` takes one more block
    (`more`). The Python reader reads the same bytes a line at a time (`readline`).
    """

    __slots__ = ("_stream", "data", "start")

    def __init__(self, stream: _Utf8Stream) -> None:
        self._stream = stream
        self.data = b""
        self.start = 0

    def advance(self, size: int) -> None:
        self.start += size

    def more(self) -> bool:
        """Add the stream's next block to what is left; False at its end."""
        block = self._stream.read(_CHUNK_BYTES)
        if not block:
            return False
        self.data = self.data[self.start :] + block
        self.start = 0
        return True

    def cut(self, limit: int) -> bool:
        """Whether the line at `start` runs past the end of the bytes here but
        could end within `limit` bytes: then one more block is read."""
        return (
            self.data.find(b"\n", self.start, self.start + limit) < 0
            and len(self.data) - self.start < limit
            and self.more()
        )

    def readline(self, limit: int) -> bytes:
        """What `BufferedReader.readline(limit)` returns."""
        parts: list[bytes] = []
        while True:
            data, start = self.data, self.start
            end = data.find(b"\n", start, start + limit) + 1
            if end:
                parts.append(data[start:end])
                self.start = end
                break
            end = min(len(data), start + limit)
            parts.append(data[start:end])
            self.start = end
            limit -= end - start
            if not limit or not self.more():
                break
        return b"".join(parts)


# A part of a `CsvLines` batch: plain lines (the position of the first, their
# bytes), or one record read by the Python reader (position, fields, reason code).
_Part = tuple[int, bytes] | tuple[int, dict[str, object], str | None]


class CsvLines(Sequence[RawRecord]):
    """A batch of CSV records whose plain lines are split only when it is read.

    It pickles as its parts, the plain lines as bytes: what the engine ships to a
    worker process. Reading it splits each plain line at the delimiter
    (`_native.split_plain`), which is what csv.reader does with a line without
    quotes (`_native.plain_lines` takes only such lines, of the header's width),
    and keeps the records.
    """

    __slots__ = ("_delimiter", "_names", "_parts", "_records", "_size")

    def __init__(
        self, names: tuple[str, ...], delimiter: str, parts: list[_Part], size: int
    ) -> None:
        self._names = names
        self._delimiter = delimiter
        self._parts = parts
        self._size = size
        self._records: list[RawRecord] | None = None

    def __reduce__(self) -> tuple[type[CsvLines], tuple[object, ...]]:
        return CsvLines, (self._names, self._delimiter, self._parts, self._size)

    def __len__(self) -> int:
        return self._size

    @overload
    def __getitem__(self, index: int) -> RawRecord: ...
    @overload
    def __getitem__(self, index: slice) -> list[RawRecord]: ...
    def __getitem__(self, index: int | slice) -> RawRecord | list[RawRecord]:
        return self._read()[index]

    def __iter__(self) -> Iterator[RawRecord]:
        return iter(self._read())

    def _read(self) -> list[RawRecord]:
        if self._records is not None:
            return self._records
        names, delimiter = list(self._names), ord(self._delimiter)
        records: list[RawRecord] = []
        for part in self._parts:
            if len(part) == 3:
                records.append(RawRecord(*part))
            else:
                position, data = part
                records += _native.split_plain(data, names, delimiter, position, RawRecord)
        self._records = records
        return records


def _batched(records: Iterator[RawRecord], size: int) -> Iterator[list[RawRecord]]:
    batch = list(islice(records, size))
    while batch:
        yield batch
        batch = list(islice(records, size))


def _check_limit(name: str, value: int) -> None:
    if value < 1:
        raise ValueError(f"{name} must be at least 1, not {value}")


# --- CSV ----------------------------------------------------------------------------


class CsvHeaderError(ValueError):
    """The first row is missing or cannot serve as a header.

    Messages name reasons and column numbers only: a file without a header has a
    contact in its first row, and record contents are never logged.
    """


# The quoting states of csv's parser that decide where a record ends (no escapechar,
# doubled quotes, non-strict: a quote opens a quoted field only as its first char).
_START_FIELD, _IN_FIELD, _IN_QUOTED, _QUOTE_IN_QUOTED = range(4)
_QUOTE = ord('"')
_QUOTED_RUN = re.compile(rb'[^"]*(?:""[^"]*)*')


def _scan(data: bytes, delimiter: int, state: int) -> int:
    """The parser's quoting state after `data`, given its state before.

    Jumps with C searches (find, one regex) so a megabyte of hostile data costs
    one loop turn per quoted field, not per byte. Line ends count as plain data:
    what matters is only whether a line ends inside a quoted field.
    """
    opens_quote = bytes((delimiter, _QUOTE))
    i, end = 0, len(data)
    while i < end:
        if state == _IN_QUOTED:
            match = _QUOTED_RUN.match(data, i)
            assert match is not None  # the pattern matches the empty string
            i = match.end()
            if i == end:
                return _IN_QUOTED
            state, i = _QUOTE_IN_QUOTED, i + 1
        elif state == _QUOTE_IN_QUOTED:
            char = data[i]
            if char == _QUOTE:
                state = _IN_QUOTED  # a doubled quote
            else:
                # Closing quote; anything but a delimiter after it is literal text.
                state = _START_FIELD if char == delimiter else _IN_FIELD
            i += 1
        elif state == _START_FIELD and data[i] == _QUOTE:
            state, i = _IN_QUOTED, i + 1
        else:
            # Unquoted text: quotes here are literal, so skip to the next field that
            # opens with a quote.
            found = data.find(opens_quote, i)
            if found < 0:
                return _START_FIELD if data[-1] == delimiter else _IN_FIELD
            state, i = _IN_QUOTED, found + 2
    return state


# Sentinels for `_CsvRecords.code`, beside the reason codes.
_TAKEN = "taken"  # the row for the last record text has been consumed
_CHECK_FIELDS = "check-fields"  # decoded, but long enough to hold an oversized field
# What csv.reader gets instead of a record that failed before parsing: one non-blank
# line, so it yields exactly one row and positions stay in step.
_PLACEHOLDER = "?\n"
# Closes a quoted field csv.reader believes still open (see `_CsvRecords.texts`).
_CLOSE_QUOTE = '"\n'


class _CsvRecords:
    """Cuts UTF-8 lines into one text per CSV record, for csv.reader.

    Records are found with `_scan`, which replays csv's quoting rules, so csv.reader
    parses each text alone and an error it raises spoils one record only. Before
    yielding a text, `code` is set to why the record failed (None when it did not);
    the consumer sets it to `_TAKEN` with each row it reads.
    """

    __slots__ = (
        "_lines",
        "_max_field",
        "_max_record",
        "_readline",
        "code",
        "delimiter",
        "position",
        "skip",
        "skip_ahead",
        "skipped",
    )

    def __init__(
        self,
        readline: Callable[[int], bytes],
        first: bytes,
        delimiter: str,
        max_field: int,
        max_record: int,
    ) -> None:
        self._readline = readline
        self._lines = chain((first,), iter(partial(readline, max_record + 1), b""))
        self.delimiter = delimiter
        self.position = 0  # of the last record read (by this or by `plain_lines`)
        self._max_field = max_field
        self._max_record = max_record
        self.code: str | None = _TAKEN
        # Whether to drop a record, given the text of a line without quotes (see
        # `_predating`); the consumer adds `skipped` to its positions and zeroes it.
        self.skip: Callable[[str], bool] | None = None
        # After a skipped line, how many more lines right after it to skip (see
        # `_skipping_ahead`): a long run of old lines goes by without Python.
        self.skip_ahead: Callable[[], int] | None = None
        self.skipped = 0

    def texts(self) -> Iterator[str]:
        max_field, max_record = self._max_field, self._max_record
        for line in self._lines:
            if line == b"\n" or line == b"\r\n":
                continue
            code: str | None = None
            # An even number of quotes ends a well-formed record on its line; odd
            # means a multi-line field or a stray quote, and only the scan can tell.
            # (`in` first: it is a memchr, `count` is not.)
            if (_QUOTE in line and line.count(_QUOTE) & 1) or len(line) > max_record:
                line, code = self._rest_of_record(line)
            text = _PLACEHOLDER
            if code is None:
                if 0 in line:  # NUL
                    code = RECORD_MALFORMED
                else:
                    try:
                        text = line.decode("utf-8")
                    except UnicodeDecodeError:
                        code = ENCODING_INVALID
                    else:
                        if len(line) > max_field:
                            code = _CHECK_FIELDS
                        elif self.skip is not None and _QUOTE not in line and self.skip(text):
                            self.skipped += 1
                            if self.skip_ahead is not None:
                                self.skipped += self.skip_ahead()
                            continue
            self.code = code
            yield text
            if self.code != _TAKEN:
                # csv.reader asks for more of a record we found complete: a stray quote
                # made it see a quoted field open. Close it, and fail the record.
                self.code = RECORD_MALFORMED
                yield _CLOSE_QUOTE

    def _rest_of_record(self, line: bytes) -> tuple[bytes, str | None]:
        """The whole record starting with `line`, or a reason it cannot be had.

        Past `max_record` bytes the record is dropped but still scanned to its end,
        so reading resumes at the next record with nothing large held in memory.
        """
        record = bytearray()
        size = 0
        state = _START_FIELD
        while True:
            size += len(line)
            if size <= self._max_record:
                record += line
            else:
                record.clear()
            state = _scan(line, ord(self.delimiter), state)
            if line.endswith(b"\n") and state != _IN_QUOTED:
                break
            # Small reads: whatever is held here comes on top of a full-size first line.
            line = self._readline(_CHUNK_BYTES)
            if not line:
                if state == _IN_QUOTED:
                    return b"", RECORD_MALFORMED  # quote still open at end of file
                break
        if size > self._max_record:
            return b"", RECORD_TOO_LARGE
        return bytes(record), None


def _sniff_delimiter(header: bytes) -> str:
    """The candidate found most often in the header line outside quoted names.

    Ties go to the earlier of `, ; TAB |`, and a header with none of them (a single
    column) reads as comma-separated.
    """
    bare = re.sub(rb'"[^"]*"', b"", header)
    return max((",", ";", "\t", "|"), key=lambda candidate: bare.count(candidate.encode()))


def _predating(delimiter: str, width: int, column: int, since: datetime) -> Callable[[str], bool]:
    """Whether a line without quotes is a record whose cell `column` predates `since`.

    csv.reader splits such a line at every delimiter and nowhere else, so
    `str.split` gives exactly its cells; a CR other than in the line end is left
    to csv.reader, and so is a line with the wrong number of cells (malformed).
    """

    def skip(text: str) -> bool:
        body = text[:-2] if text.endswith("\r\n") else text.removesuffix("\n")
        if "\r" in body:
            return False
        cells = body.split(delimiter)
        return len(cells) == width and predates(cells[column], since)

    return skip


def _instant(since: datetime) -> tuple[int, int, int, int, int, int, int]:
    """An aware time as the native code's UTC instant."""
    utc = since.astimezone(UTC)
    return (utc.year, utc.month, utc.day, utc.hour, utc.minute, utc.second, utc.microsecond)


def _skipping_ahead(
    window: _Window,
    delimiter: str,
    width: int,
    column: int,
    max_line: int,
    since: datetime,
) -> Callable[[], int]:
    """Skip the lines in the window that `_predating` would certainly skip; return their count.

    Native code (`skip_predating`) scans the window's bytes and stops
    at the first line it is not sure of, which the reader then reads as usual:
    it skips a subset of what `_predating` skips, never more (a test compares
    both). Only complete lines are consumed, so the reader stays on a line start.
    """
    instant = _instant(since)
    separator = ord(delimiter)

    def skip_ahead() -> int:
        consumed, skipped = _native.skip_predating(
            window.data, window.start, separator, width, column, max_line, instant
        )
        window.advance(consumed)
        return skipped

    return skip_ahead


def _column_name(cell: str) -> str:
    name = cell.strip().removeprefix("\ufeff").strip()
    return _ALIASES.get(_ALIAS_NOISE.sub("", name).casefold(), name)


def _column_names(cells: list[str]) -> tuple[str, ...]:
    names = tuple(_column_name(cell) for cell in cells)
    seen: dict[str, int] = {}
    for number, name in enumerate(names, 1):
        if name and seen.setdefault(name, number) != number:
            raise CsvHeaderError(f"columns {seen[name]} and {number} have the same name")
    if not seen:
        raise CsvHeaderError("the header row has no column names")
    return names


def _row_reason(row: list[str], code: str | None, width: int, max_field: int) -> str | None:
    """Why a parsed row is not a record, or None."""
    if code == _CHECK_FIELDS:
        too_large = any(len(field.encode("utf-8")) > max_field for field in row)
        code = RECORD_TOO_LARGE if too_large else None
    if code is None and len(row) != width:
        code = RECORD_MALFORMED
    return code


def _csv_error_reason(error: csv.Error) -> str:
    # csv's own field limit (checked against max_field_bytes in CsvSource) can only
    # trip on a field over max_field_bytes; it has no error type of its own.
    if str(error).startswith("field larger than field limit"):
        return RECORD_TOO_LARGE
    return RECORD_MALFORMED


class CsvSource:
    """CSV with a header row, streamed.

    Column names are stripped, lose any byte order mark and map through `_ALIASES`
    to the engine's field names; other columns (`attr.<name>` ...) keep their names,
    and columns with a blank name are dropped. Every value is a `str` ('' when empty),
    formula prefixes (= + - @) included: they are data here, neutralised only when
    the engine writes CSV. Positions count data records from 1; the header is not one.

    `delimiter` defaults to whichever of `, ; TAB |` the header line uses most.
    A record spanning several lines (quoted line breaks) is one record.
    """

    def __init__(
        self,
        opener: Callable[[], BinaryIO],
        *,
        encoding: str | None = None,
        delimiter: str | None = None,
        max_field_bytes: int = 64 * 1024,
        max_record_bytes: int = 1024 * 1024,
        skip_predating: bool = False,
    ) -> None:
        if encoding is not None:
            codecs.lookup(encoding)  # an unknown codec fails here, not mid-sync
        if delimiter is not None and (
            len(delimiter) != 1 or not delimiter.isascii() or delimiter in '"\r\n\0'
        ):
            raise ValueError("delimiter must be one ASCII character but quote, newline or NUL")
        _check_limit("max_field_bytes", max_field_bytes)
        if max_field_bytes > csv.field_size_limit():
            # csv.reader would fail such fields first; its limit is process-wide.
            raise ValueError("max_field_bytes is above csv.field_size_limit()")
        _check_limit("max_record_bytes", max_record_bytes)
        self._opener = opener
        self._encoding = encoding
        self._delimiter = delimiter
        self._max_field = max_field_bytes
        self._max_record = max_record_bytes
        self._skip_predating = skip_predating

    def batches(self, *, since: datetime | None, batch_size: int) -> Iterator[Sequence[RawRecord]]:
        """The records, `batch_size` at a time: all of them, or, built with
        `skip_predating`, all but plain lines that certainly predate `since` (see
        the module docstring).

        Raises `CsvHeaderError` before the first batch when the header is unusable.
        """
        _check_limit("batch_size", batch_size)
        with _open_utf8(self._opener(), self._encoding) as stream:
            window = _Window(stream)
            records, reader, names = self._open(window)
            rows = self._rows(reader, records, names)
            if not (self._skip_predating and since is not None and "updatedAt" in names):
                since = None
            else:
                column = names.index("updatedAt")
                records.skip = _predating(records.delimiter, len(names), column, since)
                max_line = min(self._max_field, self._max_record)
                records.skip_ahead = _skipping_ahead(
                    window, records.delimiter, len(names), column, max_line, since
                )
            yield from self._line_batches(window, records, rows, names, batch_size, since)

    def _open(self, window: _Window) -> tuple[_CsvRecords, Iterator[list[str]], tuple[str, ...]]:
        """Read the header: the reader's state, the row reader and the column names."""
        lines = iter(partial(window.readline, self._max_record + 1), b"")
        first = next((line for line in lines if line not in (b"\n", b"\r\n")), b"")
        if not first:
            raise CsvHeaderError("no header row")
        delimiter = self._delimiter or _sniff_delimiter(first)
        records = _CsvRecords(window.readline, first, delimiter, self._max_field, self._max_record)
        reader = csv.reader(records.texts(), delimiter=delimiter)
        return records, reader, self._header(reader, records)

    def _line_batches(
        self,
        window: _Window,
        records: _CsvRecords,
        rows: Iterator[RawRecord],
        names: tuple[str, ...],
        size: int,
        since: datetime | None,
    ) -> Iterator[CsvLines]:
        """Batches of the plain lines as they come (`_native.plain_lines`, or
        with `since` `_native.plain_lines_since`, which skips the old ones) and
        of the records `rows` reads from anything else, in file order."""
        delimiter = records.delimiter
        separator, width = ord(delimiter), len(names)
        max_line = min(self._max_field, self._max_record)
        instant = None if since is None else _instant(since)
        column = names.index("updatedAt") if "updatedAt" in names else 0
        parts: list[_Part] = []
        count = 0
        while True:
            room, data, start = size - count, window.data, window.start
            if instant is None:
                consumed, counted = _native.plain_lines(
                    data, start, separator, width, max_line, room
                )
                if counted:
                    parts.append((records.position + 1, data[start : start + consumed]))
                count += counted
            else:
                consumed, counted, taken = _native.plain_lines_since(
                    data, start, separator, width, column, max_line, room, instant
                )
                parts += [(records.position + 1 + n, data[a:b]) for n, a, b in taken]
                count += len(taken)
            window.advance(consumed)
            records.position += counted
            if not consumed and not window.cut(max_line):
                # Not a plain line (nor one the block's end cut): read a record.
                raw = next(rows, None)
                if raw is None:
                    break
                parts.append((raw.position, raw.fields, raw.error))
                count += 1
            if count >= size:
                yield CsvLines(names, delimiter, parts, count)
                parts, count = [], 0
        if parts:
            yield CsvLines(names, delimiter, parts, count)

    def _header(self, reader: Iterator[list[str]], records: _CsvRecords) -> tuple[str, ...]:
        try:
            cells = next(reader)
        except csv.Error as error:
            raise CsvHeaderError(f"header row: {_csv_error_reason(error)}") from None
        code = _row_reason(cells, records.code, len(cells), self._max_field)
        records.code = _TAKEN
        if code is not None:
            raise CsvHeaderError(f"header row: {code}")
        return _column_names(cells)

    def _rows(
        self, reader: Iterator[list[str]], records: _CsvRecords, names: tuple[str, ...]
    ) -> Iterator[RawRecord]:
        width, max_field = len(names), self._max_field
        blank_column = "" in names
        # `records.position`, not a local: `_line_batches` counts lines it reads itself.
        while True:
            try:
                for row in reader:
                    code = records.code
                    records.code = _TAKEN
                    records.position += 1 + records.skipped
                    records.skipped = 0
                    if code is not None or len(row) != width:
                        code = _row_reason(row, code, width, max_field)
                    if code is None:
                        fields: dict[str, object] = dict(zip(names, row))  # noqa: B905 (width checked)
                        if blank_column:
                            del fields[""]
                        yield RawRecord(records.position, fields)
                    else:
                        yield RawRecord(records.position, {}, code)
                return
            except csv.Error as error:
                # The reader resets itself; the next call starts on the next record.
                reason = _csv_error_reason(error)
            records.code = _TAKEN
            records.position += 1 + records.skipped
            records.skipped = 0
            yield RawRecord(records.position, {}, reason)


# --- JSON Lines ---------------------------------------------------------------------


def _reject_constant(name: str) -> NoReturn:
    # NaN and Infinity are Python extensions, not JSON.
    raise ValueError(f"{name} is not JSON")


_raw_decode = json.JSONDecoder(parse_constant=_reject_constant).raw_decode
# The escapes that can decode to a NUL or to half of a surrogate pair; a line with
# none of them needs no walk over its strings (also matches escaped backslashes
# before a 'u': the walk then decides).
_SUSPECT_ESCAPE = re.compile(rb"\\u(?:0000|[dD][89a-fA-F])")


def _text_reason(value: object) -> str | None:
    """Why the strings in a decoded JSON value cannot travel on, or None.

    Only \\u escapes can produce these: a NUL (rejected as in CSV) or an unpaired
    surrogate, which no UTF-8 consumer downstream could encode.
    """
    pending: list[object] = [value]
    while pending:  # a loop, not recursion: nesting depth is the input's to choose
        item = pending.pop()
        if isinstance(item, str):
            if "\0" in item:
                return RECORD_MALFORMED
            if not item.isascii():
                try:
                    item.encode("utf-8")
                except UnicodeEncodeError:
                    return ENCODING_INVALID
        elif isinstance(item, dict):
            pending.extend(item)
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)
    return None


def _json_record(line: bytes) -> dict[str, object] | str:
    """The object on a line, or the reason code why there is none."""
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError:
        return ENCODING_INVALID
    if not text.startswith("{"):
        text = text.strip()  # JSON allows whitespace around the value
        if not text.startswith("{"):
            return RECORD_MALFORMED  # not an object, whatever else it is
    try:
        # raw_decode skips json.loads' own whitespace handling; trailing data is
        # checked here instead.
        value, end = _raw_decode(text)
    except (ValueError, RecursionError):  # RecursionError: absurdly deep nesting
        return RECORD_MALFORMED
    if not isinstance(value, dict) or (end != len(text) and not text[end:].isspace()):
        return RECORD_MALFORMED
    reason = _text_reason(value) if _SUSPECT_ESCAPE.search(line) else None
    return value if reason is None else reason


def _skip_line(line: bytes, lines: Iterable[bytes]) -> None:
    """Read past the rest of an overlong line, a bounded chunk at a time."""
    if line.endswith(b"\n"):
        return
    for chunk in lines:
        if chunk.endswith(b"\n"):
            return


class JsonlSource:
    """JSON Lines: one JSON object per line, streamed.

    Fields are the object as decoded: scalars keep their JSON types (str, int, float,
    bool, None) and nested objects (`attributes`) stay dicts. Keys are not renamed.
    Blank lines are skipped and not counted. NaN and Infinity are not JSON and make
    a line malformed. `encoding` and byte order marks work as for CsvSource.
    """

    def __init__(
        self,
        opener: Callable[[], BinaryIO],
        *,
        encoding: str | None = None,
        max_line_bytes: int = 256 * 1024,
    ) -> None:
        if encoding is not None:
            codecs.lookup(encoding)
        _check_limit("max_line_bytes", max_line_bytes)
        self._opener = opener
        self._encoding = encoding
        self._max_line = max_line_bytes

    def batches(self, *, since: datetime | None, batch_size: int) -> Iterator[list[RawRecord]]:
        """All records (`since` is the engine's to apply), `batch_size` at a time."""
        _check_limit("batch_size", batch_size)
        with io.BufferedReader(_open_utf8(self._opener(), self._encoding), _CHUNK_BYTES) as stream:
            yield from _batched(self._records(stream), batch_size)

    def _records(self, stream: io.BufferedReader[_Utf8Stream]) -> Iterator[RawRecord]:
        max_line = self._max_line
        lines = iter(partial(stream.readline, max_line + 1), b"")
        position = 0
        for line in lines:
            if len(line) > max_line:
                _skip_line(line, lines)
                parsed: dict[str, object] | str = RECORD_TOO_LARGE
            elif line.isspace():
                continue
            else:
                parsed = _json_record(line)
            position += 1
            if isinstance(parsed, str):
                yield RawRecord(position, {}, parsed)
            else:
                yield RawRecord(position, parsed)
