//! The sync engine's hot loops, over whole batches: sealing a column of values
//! (AES-256-GCM envelopes), blind-index digests (HMAC-SHA256), PostgreSQL
//! COPY text encoding, the plain-record validation pass and, in `phones`,
//! the phone fast path.
//!
//! Python keeps every decision (formats, keys, associated data, what is
//! encrypted); this module only repeats a fixed operation per value, which in
//! Python costs a call into `cryptography` or `hashlib` per value. The formats
//! are those of `contactsync/engine/crypto.py` and the tests prove the two
//! agree: envelopes sealed here open with `cryptography`, digests equal
//! `hmac.digest`, rows equal psycopg's own COPY encoding.
//!
//! Errors never carry a value: they name the value's index in the batch only.

use blake2::digest::consts::U16;
use blake2::digest::Mac;
use blake2::Blake2bMac;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{
    PyBool, PyBytes, PyDateAccess, PyDateTime, PyDelta, PyDeltaAccess, PyDict, PyList, PyString,
    PyTimeAccess, PyTuple, PyTzInfo,
};
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use ring::hmac;
use ring::rand::{SecureRandom, SystemRandom};

mod phones;
use phones::{Phone, Phones};

const TAG_LEN: usize = 16;

fn not_text(index: usize) -> PyErr {
    PyValueError::new_err(format!("value #{index} is not valid Unicode text"))
}

fn utf8<'a>(value: &'a Bound<'_, PyAny>, index: usize) -> PyResult<&'a str> {
    value
        .cast::<PyString>()
        .map_err(|_| not_text(index))?
        .to_str()
        .map_err(|_| not_text(index))
}

/// Seal each plaintext under `key` as `header | nonce | ciphertext | tag`, with
/// the associated data `aad_prefix | u32be len(record id) | record id`; a None
/// plaintext (an absent value) stays None.
///
/// Nonces are 96 random bits each, from the operating system's generator.
#[pyfunction]
fn seal_many<'py>(
    py: Python<'py>,
    key: &[u8],
    header: &[u8],
    aad_prefix: &[u8],
    plaintexts: &Bound<'py, PyList>,
    record_ids: &Bound<'py, PyList>,
) -> PyResult<Bound<'py, PyList>> {
    let count = plaintexts.len();
    if record_ids.len() != count {
        return Err(PyValueError::new_err(format!(
            "{count} values but {} record ids",
            record_ids.len()
        )));
    }
    let unbound = UnboundKey::new(&AES_256_GCM, key)
        .map_err(|_| PyValueError::new_err("an AES-256-GCM key is 32 bytes"))?;
    let aead = LessSafeKey::new(unbound);
    let mut nonces = vec![0u8; NONCE_LEN * count];
    SystemRandom::new()
        .fill(&mut nonces)
        .map_err(|_| PyValueError::new_err("the system's random generator failed"))?;
    let mut aad = aad_prefix.to_vec();
    let out = PyList::empty(py);
    for (index, (plaintext, record_id)) in plaintexts.iter().zip(record_ids.iter()).enumerate() {
        if plaintext.is_none() {
            out.append(py.None())?;
            continue;
        }
        let text = utf8(&plaintext, index)?.as_bytes();
        let rid = utf8(&record_id, index)?.as_bytes();
        aad.truncate(aad_prefix.len());
        aad.extend_from_slice(&(rid.len() as u32).to_be_bytes());
        aad.extend_from_slice(rid);
        let nonce: [u8; NONCE_LEN] = nonces[index * NONCE_LEN..(index + 1) * NONCE_LEN]
            .try_into()
            .expect("a nonce-sized slice");
        let body = header.len() + NONCE_LEN;
        let envelope = PyBytes::new_with(py, body + text.len() + TAG_LEN, |buffer| {
            buffer[..header.len()].copy_from_slice(header);
            buffer[header.len()..body].copy_from_slice(&nonce);
            let (sealed, tag_out) = buffer[body..].split_at_mut(text.len());
            sealed.copy_from_slice(text);
            let tag = aead
                .seal_in_place_separate_tag(
                    Nonce::assume_unique_for_key(nonce),
                    Aad::from(&aad[..]),
                    sealed,
                )
                .map_err(|_| PyValueError::new_err(format!("value #{index} is too long")))?;
            tag_out.copy_from_slice(tag.as_ref());
            Ok(())
        })?;
        out.append(envelope)?;
    }
    Ok(out)
}

/// HMAC-SHA256 of each value's UTF-8 under `key`, the key schedule done once; a
/// None value (an absent one) stays None.
#[pyfunction]
fn hmac_sha256_many<'py>(
    py: Python<'py>,
    key: &[u8],
    values: &Bound<'py, PyList>,
) -> PyResult<Bound<'py, PyList>> {
    let key = hmac::Key::new(hmac::HMAC_SHA256, key);
    let out = PyList::empty(py);
    for (index, value) in values.iter().enumerate() {
        if value.is_none() {
            out.append(py.None())?;
            continue;
        }
        let tag = hmac::sign(&key, utf8(&value, index)?.as_bytes());
        out.append(PyBytes::new(py, tag.as_ref()))?;
    }
    Ok(out)
}

const HEX: &[u8; 16] = b"0123456789abcdef";

fn push_text(out: &mut Vec<u8>, text: &str) {
    let bytes = text.as_bytes();
    if !bytes
        .iter()
        .any(|b| matches!(b, b'\\' | b'\t' | b'\n' | b'\r'))
    {
        out.extend_from_slice(bytes);
        return;
    }
    for &b in bytes {
        match b {
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\t' => out.extend_from_slice(b"\\t"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            _ => out.push(b),
        }
    }
}

fn push_bytea(out: &mut Vec<u8>, data: &[u8]) {
    // bytea's hex input form; its backslash is escaped for COPY.
    out.extend_from_slice(b"\\\\x");
    out.reserve(2 * data.len());
    for &b in data {
        out.push(HEX[usize::from(b >> 4)]);
        out.push(HEX[usize::from(b & 15)]);
    }
}

/// Rows as PostgreSQL COPY text: one line per row, cells separated by tabs.
/// A cell is None (`\N`), str (escaped), bytes (bytea, hex) or bool (`t`/`f`).
#[pyfunction]
fn copy_text<'py>(py: Python<'py>, rows: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyBytes>> {
    let mut out: Vec<u8> = Vec::with_capacity(rows.len().unwrap_or(0) * 512);
    for (index, row) in rows.try_iter()?.enumerate() {
        let row = row?;
        for (column, cell) in row.try_iter()?.enumerate() {
            let cell = cell?;
            if column > 0 {
                out.push(b'\t');
            }
            if cell.is_none() {
                out.extend_from_slice(b"\\N");
            } else if let Ok(text) = cell.cast::<PyString>() {
                push_text(&mut out, text.to_str().map_err(|_| not_text(index))?);
            } else if let Ok(data) = cell.cast::<PyBytes>() {
                push_bytea(&mut out, data.as_bytes());
            } else if let Ok(flag) = cell.cast::<PyBool>() {
                out.push(if flag.is_true() { b't' } else { b'f' });
            } else {
                return Err(PyValueError::new_err(format!(
                    "row #{index}, cell #{column}: not None, str, bytes or bool"
                )));
            }
        }
        out.push(b'\n');
    }
    Ok(PyBytes::new(py, &out))
}

/// Days from 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's
/// `days_from_civil`).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let day_of_year = (153 * (month + if month > 2 { -3 } else { 9 }) + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// PostgreSQL's epoch (2000-01-01), in days after the Unix epoch.
const POSTGRES_EPOCH_DAYS: i64 = 10_957;

/// An aware datetime as `timestamptz`'s binary form: microseconds since
/// 2000-01-01 00:00 UTC.
fn timestamptz(value: &Bound<'_, PyDateTime>, index: usize) -> PyResult<i64> {
    let offset = value.call_method0("utcoffset")?;
    let Ok(offset) = offset.cast::<PyDelta>() else {
        return Err(PyValueError::new_err(format!(
            "row #{index}: a datetime without a time zone"
        )));
    };
    let days = days_from_civil(
        i64::from(value.get_year()),
        i64::from(value.get_month()),
        i64::from(value.get_day()),
    ) - POSTGRES_EPOCH_DAYS;
    let seconds = days * 86_400
        + i64::from(value.get_hour()) * 3_600
        + i64::from(value.get_minute()) * 60
        + i64::from(value.get_second())
        - (i64::from(offset.get_days()) * 86_400 + i64::from(offset.get_seconds()));
    Ok(seconds * 1_000_000 + i64::from(value.get_microsecond())
        - i64::from(offset.get_microseconds()))
}

fn push_field(out: &mut Vec<u8>, data: &[u8], index: usize) -> PyResult<()> {
    let length = i32::try_from(data.len())
        .map_err(|_| PyValueError::new_err(format!("row #{index}: a value over 2 GiB")))?;
    out.extend_from_slice(&length.to_be_bytes());
    out.extend_from_slice(data);
    Ok(())
}

/// Rows (tuples) as the tuples of PostgreSQL's binary COPY format, without
/// the file header and trailer. A cell is None (NULL), str (`text`), bytes
/// (`bytea`, or any type's binary form, such as `jsonb`'s), bool (`boolean`)
/// or an aware datetime (`timestamptz`).
#[pyfunction]
fn copy_binary<'py>(py: Python<'py>, rows: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyBytes>> {
    let mut out: Vec<u8> = Vec::with_capacity(rows.len().unwrap_or(0) * 512);
    for (index, row) in rows.try_iter()?.enumerate() {
        let row = row?;
        let row = row
            .cast::<PyTuple>()
            .map_err(|_| PyValueError::new_err(format!("row #{index}: not a tuple")))?;
        let width = i16::try_from(row.len())
            .map_err(|_| PyValueError::new_err(format!("row #{index}: too many cells")))?;
        out.extend_from_slice(&width.to_be_bytes());
        for (column, cell) in row.iter().enumerate() {
            if cell.is_none() {
                out.extend_from_slice(&(-1i32).to_be_bytes());
            } else if let Ok(text) = cell.cast::<PyString>() {
                push_field(
                    &mut out,
                    text.to_str().map_err(|_| not_text(index))?.as_bytes(),
                    index,
                )?;
            } else if let Ok(data) = cell.cast::<PyBytes>() {
                push_field(&mut out, data.as_bytes(), index)?;
            } else if let Ok(flag) = cell.cast::<PyBool>() {
                push_field(&mut out, &[u8::from(flag.is_true())], index)?;
            } else if let Ok(moment) = cell.cast::<PyDateTime>() {
                push_field(&mut out, &timestamptz(moment, index)?.to_be_bytes(), index)?;
            } else {
                return Err(PyValueError::new_err(format!(
                    "row #{index}, cell #{column}: not None, str, bytes, bool or datetime"
                )));
            }
        }
    }
    Ok(PyBytes::new(py, &out))
}

/// A UTC instant as (year, month, day, hour, minute, second, microsecond):
/// tuples order as the instants do.
type Instant = (u16, u8, u8, u8, u8, u8, u32);

fn digits(text: &[u8]) -> Option<u32> {
    text.iter().try_fold(0u32, |n, &b| {
        b.is_ascii_digit().then(|| n * 10 + u32::from(b - b'0'))
    })
}

/// The instant of a timestamp in the one shape CSV exports mostly use,
/// `YYYY-MM-DDTHH:MM:SS[.fff|.ffffff][Z|+00:00]` (no suffix: UTC), or None for
/// anything else, which is then left to Python's `datetime.fromisoformat`.
fn utc_instant(text: &[u8]) -> Option<Instant> {
    if text.len() < 19 || text[4] != b'-' || text[7] != b'-' || text[10] != b'T' {
        return None;
    }
    if text[13] != b':' || text[16] != b':' {
        return None;
    }
    let year = digits(&text[0..4])?;
    let (month, day) = (digits(&text[5..7])?, digits(&text[8..10])?);
    let (hour, minute, second) = (
        digits(&text[11..13])?,
        digits(&text[14..16])?,
        digits(&text[17..19])?,
    );
    let mut rest = &text[19..];
    let mut micro = 0;
    if let Some(fraction) = rest.strip_prefix(b".") {
        let width = fraction.iter().take_while(|b| b.is_ascii_digit()).count();
        if width != 3 && width != 6 {
            return None;
        }
        micro = digits(&fraction[..width])? * if width == 3 { 1000 } else { 1 };
        rest = &fraction[width..];
    }
    if !matches!(rest, b"" | b"Z" | b"+00:00") {
        return None;
    }
    let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    let days = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return None,
    };
    if year == 0 || day == 0 || day > days || hour > 23 || minute > 59 || second > 59 {
        return None;
    }
    Some((
        year as u16,
        month as u8,
        day as u8,
        hour as u8,
        minute as u8,
        second as u8,
        micro,
    ))
}

/// Cell `column` of an unquoted line, if it has exactly `width` cells.
fn cell(body: &[u8], delimiter: u8, width: usize, column: usize) -> Option<&[u8]> {
    if column >= width || !has_cells(body, delimiter, width) {
        return None;
    }
    // From whichever end has fewer delimiters before the cell.
    let after = width - 1 - column;
    let (start, end) = if column <= after {
        let mut ends = memchr::memchr_iter(delimiter, body);
        let start = if column == 0 {
            0
        } else {
            ends.nth(column - 1)? + 1
        };
        (start, ends.next().unwrap_or(body.len()))
    } else {
        let mut starts = memchr::memrchr_iter(delimiter, body);
        let end = if after == 0 {
            body.len()
        } else {
            starts.nth(after - 1)?
        };
        (starts.next().map_or(0, |i| i + 1), end)
    };
    Some(&body[start..end])
}

/// Whether an unquoted line has exactly `width` cells.
fn has_cells(body: &[u8], delimiter: u8, width: usize) -> bool {
    count_byte(body, delimiter) + 1 == width
}

/// How many bytes of `data` are `byte`.
fn count_byte(data: &[u8], byte: u8) -> usize {
    // Byte-wide sums of at most 255 compares: the compiler vectorises them.
    data.chunks(255)
        .map(|chunk| usize::from(chunk.iter().fold(0u8, |n, &b| n + u8::from(b == byte))))
        .sum()
}

/// How many leading bytes of `data` are ASCII.
fn ascii_prefix(data: &[u8]) -> usize {
    let mut length = 0;
    for chunk in data.chunks(64) {
        if !chunk.is_ascii() {
            return length + chunk.iter().take_while(|b| b.is_ascii()).count();
        }
        length += chunk.len();
    }
    length
}

/// The leading complete lines of `data` that `accept` takes: their byte
/// length and their number. Blank lines pass, uncounted; any other line is
/// offered (its body, and the line's byte range) only when it is plain,
/// which is when Python's `csv.reader` would just split it on the delimiter
/// and the Python reader would find nothing wrong with it: at most `max_line`
/// bytes with its line end, valid UTF-8, without quote, NUL or inner CR. The
/// first line not taken stops the scan, and the Python reader reads it.
fn scan_plain(
    data: &[u8],
    max_line: usize,
    mut accept: impl FnMut(&[u8], std::ops::Range<usize>) -> bool,
) -> (usize, usize) {
    let (mut consumed, mut counted) = (0, 0);
    // Where the next quote, NUL or CR and the next byte past ASCII are: each
    // search covers a run of lines, not one line (found again once passed).
    let special = |from: usize| {
        from + memchr::memchr3(b'"', b'\0', b'\r', &data[from..]).unwrap_or(data.len() - from)
    };
    let wide = |from: usize| from + ascii_prefix(&data[from..]);
    let (mut next_special, mut next_wide) = (special(0), wide(0));
    while let Some(end) = memchr::memchr(b'\n', &data[consumed..]) {
        let line = consumed..consumed + end + 1;
        let body = &data[consumed..consumed + end];
        let body = body.strip_suffix(b"\r").unwrap_or(body);
        if !body.is_empty() {
            if next_special < consumed {
                next_special = special(consumed);
            }
            if next_wide < consumed {
                next_wide = wide(consumed);
            }
            let body_end = consumed + body.len();
            if line.len() > max_line
                || next_special < body_end
                || (next_wide < body_end && std::str::from_utf8(body).is_err())
                || !accept(body, line.clone())
            {
                break;
            }
            counted += 1;
        }
        consumed = line.end;
    }
    (consumed, counted)
}

/// `data` from `start`: the scans read a source's buffer in place, from
/// where its reader stands.
fn rest(data: &[u8], start: usize) -> &[u8] {
    data.get(start..).unwrap_or_default()
}

/// The timestamp in cell `column` of a plain line of `width` cells, when
/// `utc_instant` reads it.
fn line_instant(body: &[u8], delimiter: u8, width: usize, column: usize) -> Option<Instant> {
    cell(body, delimiter, width, column).and_then(utc_instant)
}

/// How far a CSV source may skip ahead in an incremental run: the byte length
/// and the number of the leading complete lines of `data[start..]` that are
/// each certainly a record older than `since` (or blank: skipped, not counted).
///
/// Such a line is plain (`scan_plain`), has exactly `width` cells, and its
/// cell `column` holds a timestamp `utc_instant` reads as before `since`. So
/// this only ever skips lines the Python reader would skip too (the tests
/// compare them).
#[pyfunction]
fn skip_predating(
    data: &[u8],
    start: usize,
    delimiter: u8,
    width: usize,
    column: usize,
    max_line: usize,
    since: Instant,
) -> (usize, usize) {
    scan_plain(
        rest(data, start),
        max_line,
        |body, _| matches!(line_instant(body, delimiter, width, column), Some(instant) if instant < since),
    )
}

/// The leading complete lines of `data[start..]` that are plain records of `width`
/// cells (`scan_plain`), at most `limit` of them: their byte length and
/// number. The Python reader reads each of them as `line.split(delimiter)`
/// (the tests compare them).
#[pyfunction]
fn plain_lines(
    data: &[u8],
    start: usize,
    delimiter: u8,
    width: usize,
    max_line: usize,
    limit: usize,
) -> (usize, usize) {
    let mut taken = 0;
    scan_plain(rest(data, start), max_line, |body, _| {
        let take = taken < limit && has_cells(body, delimiter, width);
        taken += usize::from(take);
        take
    })
}

/// An incremental read's `plain_lines`: of the leading plain lines of `width`
/// cells whose cell `column` holds a timestamp `utc_instant` reads, those
/// before `since` are skipped and the others taken, at most `limit` of them.
/// Returns the byte length and number of all these lines and, for each one
/// taken, its number among them (from 0) and its byte range in `data`. A line whose
/// timestamp has another shape stops the scan: the Python reader decides.
#[pyfunction]
#[allow(clippy::type_complexity, clippy::too_many_arguments)] // Python's call
fn plain_lines_since(
    data: &[u8],
    start: usize,
    delimiter: u8,
    width: usize,
    column: usize,
    max_line: usize,
    limit: usize,
    since: Instant,
) -> (usize, usize, Vec<(usize, usize, usize)>) {
    let mut taken: Vec<(usize, usize, usize)> = Vec::new();
    let mut seen = 0;
    let (consumed, counted) = scan_plain(rest(data, start), max_line, |body, line| {
        let keep = match line_instant(body, delimiter, width, column) {
            None => return false,
            Some(instant) => instant >= since,
        };
        if keep {
            if taken.len() == limit {
                return false;
            }
            taken.push((seen, start + line.start, start + line.end));
        }
        seen += 1;
        true
    });
    (consumed, counted, taken)
}

/// The records of lines `plain_lines` took: each non-blank line split at
/// `delimiter` into a dict of `names` to cells (a later column of the same
/// name wins, a blank name is dropped), built as `record(position, fields)`
/// with positions from `first`. What `csv.reader` and the Python reader make
/// of such lines (the tests compare them).
#[pyfunction]
fn split_plain<'py>(
    py: Python<'py>,
    data: &[u8],
    names: Vec<Bound<'py, PyString>>,
    delimiter: u8,
    first: usize,
    record: &Bound<'py, PyAny>,
) -> PyResult<Bound<'py, PyList>> {
    let text = std::str::from_utf8(data)
        .map_err(|_| PyValueError::new_err("plain lines that are not UTF-8"))?;
    let blank: Vec<bool> = names
        .iter()
        .map(|name| name.to_str().map(str::is_empty))
        .collect::<PyResult<_>>()?;
    let out = PyList::empty(py);
    let mut position = first;
    for line in text.split_terminator('\n') {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.is_empty() {
            continue;
        }
        let fields = PyDict::new(py);
        for ((name, blank), cell) in names.iter().zip(&blank).zip(line.split(delimiter as char)) {
            if !blank {
                fields.set_item(name, cell)?;
            }
        }
        out.append(record.call1((position, fields))?)?;
        position += 1;
    }
    Ok(out)
}

/// The keyed BLAKE2b-128 content digest of each contact (a `records.Contact`):
/// of its text fields (U+001E for an absent one), `1`/`0` for `deleted` and
/// `key U+001E value` per attribute, joined with U+001F, as UTF-8. The same
/// bytes `prepare.content_digest_by_python` hashes; the tests compare the two.
#[pyfunction]
fn content_digests<'py>(
    py: Python<'py>,
    key: &[u8],
    contacts: &Bound<'py, PyList>,
) -> PyResult<Bound<'py, PyList>> {
    let mac = Blake2bMac::<U16>::new_from_slice(key)
        .map_err(|_| PyValueError::new_err("a BLAKE2b key is 1 to 64 bytes"))?;
    let out = PyList::empty(py);
    for (index, contact) in contacts.iter().enumerate() {
        let mut digest = mac.clone();
        for field in 1..=6 {
            let value = contact.get_item(field)?;
            if value.is_none() {
                digest.update("\u{1e}".as_bytes());
            } else {
                digest.update(utf8(&value, index)?.as_bytes());
            }
            digest.update("\u{1f}".as_bytes());
        }
        digest.update(if contact.get_item(8)?.is_truthy()? {
            b"1"
        } else {
            b"0"
        });
        for pair in contact.get_item(9)?.try_iter()? {
            let pair = pair?;
            digest.update("\u{1f}".as_bytes());
            digest.update(utf8(&pair.get_item(0)?, index)?.as_bytes());
            digest.update("\u{1e}".as_bytes());
            digest.update(utf8(&pair.get_item(1)?, index)?.as_bytes());
        }
        out.append(PyBytes::new(py, &digest.finalize().into_bytes()))?;
    }
    Ok(out)
}

// -- validation of plain records ------------------------------------------------

/// Printable ASCII with single inner spaces and none at either end: the text
/// `clean_text` returns unchanged (ASCII is always NFC).
fn clean_ascii(text: &str) -> bool {
    let bytes = text.as_bytes();
    bytes.iter().all(|b| (0x20..0x7f).contains(b))
        && bytes.first() != Some(&b' ')
        && bytes.last() != Some(&b' ')
        && !bytes.windows(2).any(|pair| pair == b"  ")
}

/// The letters of Latin-1 and Latin Extended-A (U+00C0..U+017F, without the
/// signs U+00D7 and U+00F7): precomposed letters that are NFC, combine with
/// no neighbour and hold nothing `clean_text` removes, so text of these and
/// printable ASCII is NFC as written. `test_records_fast_path` checks this
/// against Python's own Unicode tables.
fn is_latin_letter(c: char) -> bool {
    ('\u{c0}'..='\u{17f}').contains(&c) && c != '\u{d7}' && c != '\u{f7}'
}

/// `clean_ascii`, but also with Latin letters: the names, companies and titles
/// `clean_text` returns unchanged. Returns its length in characters (Python's
/// `len`), or None when it is not such text.
fn clean_latin(text: &str) -> Option<usize> {
    let mut chars = 0;
    for c in text.chars() {
        if !((' '..='~').contains(&c) || is_latin_letter(c)) {
            return None;
        }
        chars += 1;
    }
    let bytes = text.as_bytes();
    (bytes.first() != Some(&b' ')
        && bytes.last() != Some(&b' ')
        && !bytes.windows(2).any(|pair| pair == b"  "))
    .then_some(chars)
}

const ATEXT_SPECIALS: &[u8] = b"!#$%&'*+/=?^_`{|}~-";

fn is_atext(b: u8) -> bool {
    b.is_ascii_alphanumeric() || ATEXT_SPECIALS.contains(&b)
}

fn is_label(label: &[u8]) -> bool {
    (1..=63).contains(&label.len())
        && label[0].is_ascii_alphanumeric()
        && label[label.len() - 1].is_ascii_alphanumeric()
        && label
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || b == b'-')
}

fn is_tld(label: &[u8]) -> bool {
    (1..=63).contains(&label.len())
        && label[label.len() - 1].is_ascii_alphabetic()
        && (label.len() == 1 || label[0].is_ascii_alphanumeric())
        && label
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || b == b'-')
}

/// The optional text fields, in the order of `records.Contact`; bit `i` of a
/// record's pending mask leaves field `i` to Python, as given.
const TEXT_FIELDS: [&str; 6] = [
    "email",
    "phone",
    "firstName",
    "lastName",
    "company",
    "jobTitle",
];
const EMAIL: usize = 0;
const PHONE: usize = 1;
/// `Prevalidator.keys`: these, then `TEXT_FIELDS`.
const ID: usize = 0;
const UPDATED_AT: usize = 1;
const DELETED: usize = 2;
const TEXT_KEYS: usize = 3;

/// What `Prevalidator.record` makes of a record (see `Prevalidator.check`).
enum Answer<'py> {
    Python,
    Contact(Bound<'py, PyAny>),
    Pending(Bound<'py, PyTuple>),
}

/// The plain-record path of `records.validate_record`, for the shapes it
/// decides alone: see `Prevalidator.check`.
#[pyclass(frozen)]
struct Prevalidator {
    limits: [usize; 6],
    max_id: usize,
    max_chars: usize,
    special_use: Vec<Vec<u8>>,
    role_mailboxes: Vec<Vec<u8>>,
    false_words: Vec<String>,
    true_words: Vec<String>,
    utc: Py<PyAny>,
    phones: Py<Phones>,
    keys: Vec<Py<PyString>>,
    /// `records.Contact`, made with `tuple.__new__` as its `_make` does.
    contact: Py<PyAny>,
    tuple_new: Py<PyAny>,
}

impl Prevalidator {
    /// The email fast path (`normalize.fast_normalize_email`) for a clean
    /// address with an ASCII domain: its normalised form, or None to leave it
    /// to Python. The local part may hold Latin letters as well as ASCII:
    /// email-validator accepts any letter in a dot-atom (RFC 6531) and keeps
    /// such a local part as it is (it is NFC, and no role mailbox name).
    fn email(&self, text: &str) -> Option<String> {
        let (local, domain) = text.split_once('@')?;
        let atext = |c: char| {
            if c.is_ascii() {
                is_atext(c as u8)
            } else {
                is_latin_letter(c)
            }
        };
        if local.is_empty()
            || !local
                .split('.')
                .all(|part| !part.is_empty() && part.chars().all(atext))
        {
            return None;
        }
        let labels: Vec<&[u8]> = domain.as_bytes().split(|&b| b == b'.').collect();
        let (tld, hosts) = labels.split_last()?;
        if hosts.is_empty() || !is_tld(tld) || !hosts.iter().all(|label| is_label(label)) {
            return None;
        }
        let domain = domain.to_ascii_lowercase();
        let dotted = format!(".{domain}");
        if domain.contains("--")
            || self
                .special_use
                .iter()
                .any(|s| dotted.as_bytes().ends_with(s))
        {
            return None;
        }
        let lower = local.to_ascii_lowercase();
        let local = if self
            .role_mailboxes
            .iter()
            .any(|name| name == lower.as_bytes())
        {
            lower
        } else {
            local.to_owned()
        };
        Some(format!("{local}@{domain}"))
    }

    fn record<'py>(
        &self,
        py: Python<'py>,
        record: &Bound<'py, PyAny>,
        region: &str,
    ) -> PyResult<Answer<'py>> {
        let Ok(fields) = record.cast_exact::<PyDict>() else {
            return Ok(Answer::Python);
        };
        // Every value a str (or None), no attributes, and short enough that
        // the 16 KiB limit cannot apply: anything else is Python's.
        let mut chars = 0;
        for (key, value) in fields.iter() {
            let Ok(key) = key.cast_exact::<PyString>() else {
                return Ok(Answer::Python);
            };
            let Ok(name) = key.to_str() else {
                return Ok(Answer::Python); // a lone surrogate: the Python path says why
            };
            if name == "attributes" || name.starts_with("attr.") {
                return Ok(Answer::Python);
            }
            chars += name.chars().count();
            if let Ok(text) = value.cast_exact::<PyString>() {
                chars += text.len()?;
            } else if !value.is_none() {
                return Ok(Answer::Python);
            }
        }
        if chars > self.max_chars {
            return Ok(Answer::Python);
        }
        // Lookups by interned keys: a key made per lookup costs more than the lookup.
        let text = |key: usize| -> PyResult<Option<Bound<'py, PyString>>> {
            Ok(fields
                .get_item(self.keys[key].bind(py))?
                .and_then(|v| v.cast_exact::<PyString>().ok().cloned()))
        };
        let Some(id) = text(ID)? else {
            return Ok(Answer::Python);
        };
        let Ok(id_str) = id.to_str() else {
            return Ok(Answer::Python);
        };
        if id_str.is_empty() || id_str.len() > self.max_id || !clean_ascii(id_str) {
            return Ok(Answer::Python);
        }
        let Some(stamp) = text(UPDATED_AT)? else {
            return Ok(Answer::Python);
        };
        let Ok(stamp) = stamp.to_str() else {
            return Ok(Answer::Python);
        };
        let Some((y, mo, d, h, mi, s, us)) = (clean_ascii(stamp))
            .then(|| utc_instant(stamp.as_bytes()))
            .flatten()
        else {
            return Ok(Answer::Python);
        };
        let deleted = match text(DELETED)? {
            None => false,
            Some(word) => {
                let Ok(word) = word.to_str() else {
                    return Ok(Answer::Python);
                };
                if !(word.is_empty() || clean_ascii(word)) {
                    return Ok(Answer::Python);
                }
                let word = word.to_ascii_lowercase();
                if word.is_empty() || self.false_words.contains(&word) {
                    false
                } else if self.true_words.contains(&word) {
                    true
                } else {
                    return Ok(Answer::Python);
                }
            }
        };
        let mut values: Vec<Bound<'py, PyAny>> = Vec::with_capacity(11);
        values.push(id.into_any());
        let mut pending = 0u32;
        for index in 0..TEXT_FIELDS.len() {
            let value = fields.get_item(self.keys[TEXT_KEYS + index].bind(py))?;
            let Some(value) = value.filter(|v| !v.is_none()) else {
                values.push(py.None().into_bound(py));
                continue;
            };
            let Ok(text) = value.cast_exact::<PyString>()?.to_str() else {
                pending |= 1 << index;
                values.push(value);
                continue;
            };
            if text.is_empty() {
                values.push(py.None().into_bound(py));
                continue;
            }
            let limit = self.limits[index];
            let ascii = clean_ascii(text) && text.len() <= limit;
            let decided = match index {
                // The limit in UTF-8 bytes, as email-validator counts.
                EMAIL => (clean_latin(text).is_some() && text.len() <= limit)
                    .then(|| self.email(text))
                    .flatten()
                    .map(|email| PyString::new(py, &email).into_any()),
                PHONE if ascii => match self.phones.get().e164(py, text, region)? {
                    Phone::Valid(e164) => Some(PyString::new(py, &e164).into_any()),
                    Phone::Invalid | Phone::Defer => None,
                },
                PHONE => None,
                // Names, company, title: as given, when clean and without
                // the characters markup needs.
                _ => (clean_latin(text).is_some_and(|chars| chars <= limit)
                    && !text.bytes().any(|b| matches!(b, b'<' | b':' | b'&')))
                .then(|| value.clone()),
            };
            if let Some(decided) = decided {
                values.push(decided);
                continue;
            }
            pending |= 1 << index;
            values.push(value);
        }
        let utc = self.utc.bind(py).cast::<PyTzInfo>()?;
        let updated_at = PyDateTime::new(py, i32::from(y), mo, d, h, mi, s, us, Some(utc))?;
        values.push(updated_at.into_any());
        values.push(PyBool::new(py, deleted).to_owned().into_any());
        values.push(PyTuple::empty(py).into_any()); // attributes: none
        if pending == 0 {
            let values = PyTuple::new(py, values)?;
            let new = self.tuple_new.bind(py);
            return Ok(Answer::Contact(new.call1((self.contact.bind(py), values))?));
        }
        let values = PyList::new(py, values)?.into_any();
        let pending = pending.into_pyobject(py)?.into_any();
        Ok(Answer::Pending(PyTuple::new(py, [values, pending])?))
    }
}

#[pymethods]
impl Prevalidator {
    #[new]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        limits: [usize; 6],
        max_id: usize,
        max_chars: usize,
        special_use: Vec<String>,
        role_mailboxes: Vec<String>,
        false_words: Vec<String>,
        true_words: Vec<String>,
        utc: Py<PyAny>,
        phones: Py<Phones>,
        contact: Py<PyAny>,
    ) -> PyResult<Self> {
        Ok(Prevalidator {
            limits,
            max_id,
            max_chars,
            special_use: special_use
                .into_iter()
                .map(|s| format!(".{s}").into_bytes())
                .collect(),
            role_mailboxes: role_mailboxes.into_iter().map(String::into_bytes).collect(),
            false_words,
            true_words,
            utc,
            phones,
            keys: ["externalId", "updatedAt", "deleted"]
                .iter()
                .chain(TEXT_FIELDS.iter())
                .map(|name| PyString::intern(py, name).unbind())
                .collect(),
            contact,
            tuple_new: py.get_type::<PyTuple>().getattr("__new__")?.unbind(),
        })
    }

    /// Per record: None (Python decides the whole record), the
    /// `records.Contact` when it decided every field, or else a pair: the
    /// list of the Contact's values (externalId, email, phone, firstName,
    /// lastName, company, jobTitle, updatedAt, deleted, and no attributes)
    /// with the mask of the text fields still pending. Then the positions of
    /// the records that are not a Contact yet, so that Python visits only those.
    ///
    /// It decides a record only when it is an exact dict of str (or None)
    /// values without attributes, its externalId and updatedAt are clean
    /// ASCII (the timestamp in `utc_instant`'s shape) and `deleted` is
    /// absent, blank or one of the usual words. Each text
    /// field it then either decides (absent or blank: None; a clean name,
    /// company or title of ASCII and Latin letters within its limit and
    /// without `< : &`; an email the fast path's grammar accepts, its local
    /// part also with Latin letters, normalised; a clean ASCII phone the
    /// phone fast path finds valid for the default `region`, in E.164) or
    /// leaves to Python by setting its bit in `pending`. Whatever it decides
    /// is what the Python fast path answers; the tests compare them.
    fn check<'py>(
        &self,
        py: Python<'py>,
        records: &Bound<'py, PyList>,
        region: &str,
    ) -> PyResult<(Bound<'py, PyList>, Vec<usize>)> {
        let out = PyList::empty(py);
        let mut undecided = Vec::new();
        for (index, record) in records.iter().enumerate() {
            match self.record(py, &record, region)? {
                Answer::Contact(contact) => out.append(contact)?,
                Answer::Pending(pair) => {
                    undecided.push(index);
                    out.append(pair)?
                }
                Answer::Python => {
                    undecided.push(index);
                    out.append(py.None())?
                }
            }
        }
        Ok((out, undecided))
    }
}

#[pymodule]
fn _native(module: &Bound<'_, PyModule>) -> PyResult<()> {
    module.add_function(wrap_pyfunction!(seal_many, module)?)?;
    module.add_function(wrap_pyfunction!(hmac_sha256_many, module)?)?;
    module.add_function(wrap_pyfunction!(copy_text, module)?)?;
    module.add_function(wrap_pyfunction!(copy_binary, module)?)?;
    module.add_function(wrap_pyfunction!(skip_predating, module)?)?;
    module.add_function(wrap_pyfunction!(plain_lines, module)?)?;
    module.add_function(wrap_pyfunction!(plain_lines_since, module)?)?;
    module.add_function(wrap_pyfunction!(split_plain, module)?)?;
    module.add_class::<Prevalidator>()?;
    module.add_class::<Phones>()?;
    module.add_function(wrap_pyfunction!(content_digests, module)?)?;
    Ok(())
}
