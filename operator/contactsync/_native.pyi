# The engine's hot loops, in native code (native/src/lib.rs): see that file.

from collections.abc import Callable, Iterable, Mapping
from datetime import datetime, tzinfo
from typing import Any, Literal

def seal_many(
    key: bytes,
    header: bytes,
    aad_prefix: bytes,
    plaintexts: list[str | None],
    record_ids: list[str],
) -> list[bytes | None]: ...
def hmac_sha256_many(key: bytes, values: list[str | None]) -> list[bytes | None]: ...
def copy_text(rows: Iterable[tuple[str | bytes | bool | None, ...]]) -> bytes: ...
def copy_binary(
    rows: Iterable[tuple[str | bytes | bool | datetime | None, ...]],
) -> bytes: ...
def skip_predating(
    data: bytes,
    start: int,
    delimiter: int,
    width: int,
    column: int,
    max_line: int,
    since: tuple[int, int, int, int, int, int, int],
) -> tuple[int, int]: ...
def plain_lines(
    data: bytes, start: int, delimiter: int, width: int, max_line: int, limit: int
) -> tuple[int, int]: ...
def plain_lines_since(
    data: bytes,
    start: int,
    delimiter: int,
    width: int,
    column: int,
    max_line: int,
    limit: int,
    since: tuple[int, int, int, int, int, int, int],
) -> tuple[int, int, list[tuple[int, int, int]]]: ...
def split_plain(
    data: bytes,
    names: list[str],
    delimiter: int,
    first: int,
    record: Callable[[int, dict[str, object]], Any],
) -> list[Any]: ...

class Phones:
    def __init__(
        self,
        region_cc: dict[str, int],
        country_codes: set[int],
        source: Callable[[int], list[Any] | None],
    ) -> None: ...
    def normalize(self, value: str, region: str) -> str | Literal[False] | None: ...

class Prevalidator:
    def __init__(
        self,
        limits: tuple[int, int, int, int, int, int],
        max_id: int,
        max_chars: int,
        special_use: list[str],
        role_mailboxes: list[str],
        false_words: list[str],
        true_words: list[str],
        utc: tzinfo,
        phones: Phones,
        contact: type[tuple[Any, ...]],
    ) -> None: ...
    def check(
        self, records: list[Mapping[str, object]], region: str
    ) -> tuple[list[Any], list[int]]: ...

def content_digests(key: bytes, contacts: list[Any]) -> list[bytes]: ...
