"""The API's JSON parser: bounded body size, bounded nesting, and only text PostgreSQL can store.

Python's `json` recurses once per nesting level, so `[[[[…]]]]` a hundred thousand deep ends in a
RecursionError; the depth is therefore measured on the raw text before parsing. Lone surrogates
("\\ud800") and NUL characters are valid JSON escapes but not storable text: they are refused here,
naming where they are, instead of failing later in a tokenizer or a database insert.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator
from typing import Any

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.core.files.uploadhandler import FileUploadHandler
from rest_framework.parsers import FormParser, JSONParser, MultiPartParser

from sceneclf_site.api_errors import PayloadTooLarge, ServiceError

DEFAULT_MAX_DEPTH = 32
# A JSON string (escapes included) or one bracket: the only tokens that matter for the depth.
_DEPTH_TOKENS = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{}]')
_OPENERS = {"[", "{"}


def max_json_depth() -> int:
    return int(getattr(settings, "JSON_MAX_DEPTH", DEFAULT_MAX_DEPTH))


def json_depth_exceeds(text: str, limit: int) -> bool:
    """True when arrays/objects nest deeper than `limit`. Brackets inside strings do not count."""
    if text.count("[") + text.count("{") <= limit:
        return False  # not enough brackets to nest that deep: skip the scan
    depth = 0
    for match in _DEPTH_TOKENS.finditer(text):
        token = match.group()
        if token in _OPENERS:
            depth += 1
            if depth > limit:
                return True
        elif token in ("]", "}"):
            depth -= 1
    return False


def first_bad_character(value: str) -> tuple[int, str] | None:
    """(position, description) of the first character no database can store, or None."""
    if "\x00" in value:
        return value.index("\x00"), "a NUL character (U+0000)"
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        return exc.start, f"a lone surrogate (U+{ord(value[exc.start]):04X})"
    return None


def _walk(value: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    """Every key and scalar of a parsed document with its path (`texts[3]`, `metadata.contact`). Iterative, so
    the walk itself never recurses."""
    stack = [(path, value)]
    while stack:
        where, current = stack.pop()
        if isinstance(current, dict):
            for key, item in current.items():
                child = f"{where}.{key}" if where else str(key)
                yield f"{child} (key)", key
                stack.append((child, item))
        elif isinstance(current, list):
            stack.extend((f"{where}[{index}]", item) for index, item in enumerate(current))
        else:
            yield where or "body", current


def document_problem(value: Any) -> tuple[str, dict[str, Any]] | None:
    """A message and details for the first unstorable string or non-finite number in a parsed document."""
    for where, scalar in _walk(value):
        if isinstance(scalar, str):
            bad = first_bad_character(scalar)
            if bad is not None:
                position, what = bad
                return (
                    f"{where} contains {what} at character {position}, which is not valid text. "
                    "Send well-formed Unicode (UTF-8).",
                    {"field": where, "position": position},
                )
        elif isinstance(scalar, float) and not math.isfinite(scalar):
            return f"{where} is a number too large to store.", {"field": where}
    return None


def loads_checked(text: str, *, max_depth: int | None = None) -> Any:
    """`json.loads` that refuses too deep nesting, NaN/Infinity, lone surrogates and NUL characters.
    Raises ValueError (json.JSONDecodeError for syntax) with a message meant for people."""
    limit = max_json_depth() if max_depth is None else max_depth
    if json_depth_exceeds(text, limit):
        raise JSONTooDeep(f"The JSON nests arrays/objects deeper than {limit} levels.", limit)
    value = json.loads(text, parse_constant=_refuse_constant)
    problem = document_problem(value)
    if problem is not None:
        raise UnstorableJSON(*problem)
    return value


class JSONTooDeep(ValueError):
    def __init__(self, message: str, limit: int) -> None:
        super().__init__(message)
        self.limit = limit


class UnstorableJSON(ValueError):
    def __init__(self, message: str, details: dict[str, Any]) -> None:
        super().__init__(message)
        self.details = details


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


class StrictJSONParser(JSONParser):
    """The default JSON parser of the API (REST_FRAMEWORK['DEFAULT_PARSER_CLASSES'])."""

    def parse(self, stream, media_type=None, parser_context=None):  # type: ignore[no-untyped-def]
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        request = (parser_context or {}).get("request")
        declared = _content_length(request)
        if limit is not None and declared is not None and declared > limit:
            raise _too_large(declared, limit)
        raw = stream.read(limit + 1) if limit is not None else stream.read()
        if limit is not None and len(raw) > limit:
            raise _too_large(None, limit)
        encoding = (parser_context or {}).get("encoding", settings.DEFAULT_CHARSET)
        try:
            text = raw.decode(encoding)
        except (UnicodeDecodeError, LookupError):
            raise ServiceError(f"The body is not valid {encoding} text.", code="parse_error") from None
        try:
            return loads_checked(text)
        except JSONTooDeep as exc:
            raise ServiceError(str(exc), code="json_too_deep", details={"limit": exc.limit}) from None
        except UnstorableJSON as exc:
            raise ServiceError(str(exc), code="invalid_text", details=exc.details) from None
        except ValueError as exc:
            raise ServiceError(f"JSON parse error - {exc}", code="parse_error") from None


def _content_length(request: Any) -> int | None:
    meta = getattr(request, "META", {}) if request is not None else {}
    try:
        return int(meta.get("CONTENT_LENGTH") or 0) or None
    except (TypeError, ValueError):
        return None


def _too_large(size: int | None, limit: int) -> PayloadTooLarge:
    sent = f" ({size} bytes)" if size is not None else ""
    return PayloadTooLarge(
        f"The request body{sent} is larger than the limit of {limit} bytes (DATA_UPLOAD_MAX_MEMORY_SIZE).",
        details={"limit": limit},
    )


class CappedUploadHandler(FileUploadHandler):
    """First of FILE_UPLOAD_HANDLERS: refuses an upload over UPLOAD_MAX_BYTES as soon as it is known to be
    too big (from Content-Length, or while the bytes arrive), before it is spooled to disk."""

    def handle_raw_input(self, input_data, META, content_length, boundary, encoding=None):  # type: ignore[no-untyped-def]
        limit = upload_limit()
        # The multipart envelope (boundaries, headers, other fields) adds a little on top of the file itself.
        if content_length and content_length > limit + UPLOAD_ENVELOPE_BYTES:
            raise UploadTooLarge(limit)

    def receive_data_chunk(self, raw_data: bytes, start: int) -> bytes:
        limit = upload_limit()
        if start + len(raw_data) > limit:
            raise UploadTooLarge(limit)
        return raw_data

    def file_complete(self, file_size: int) -> None:
        return None  # the next handler builds the file


UPLOAD_ENVELOPE_BYTES = 64 * 1024


def upload_limit() -> int:
    return int(settings.UPLOAD_MAX_BYTES)


class UploadTooLarge(RequestDataTooBig):
    """A SuspiciousOperation, so pages answer Django's 400; the API handler turns it into a JSON 413."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"The uploaded file is larger than the limit of {limit} bytes (UPLOAD_MAX_BYTES).")
        self.limit = limit


def _check_form_fields(data: Any) -> None:
    for name, values in data.lists():
        for value in [name, *values]:
            bad = first_bad_character(value) if isinstance(value, str) else None
            if bad is not None:
                raise ServiceError(
                    f"Form field '{name[:64]}' contains {bad[1]} at character {bad[0]}, which is not valid text.",
                    code="invalid_text",
                    details={"field": name[:64], "position": bad[0]},
                )


class StrictFormParser(FormParser):
    """Form bodies: `%00` decodes to a NUL character, which PostgreSQL cannot store."""

    def parse(self, stream, media_type=None, parser_context=None):  # type: ignore[no-untyped-def]
        data = super().parse(stream, media_type, parser_context)
        _check_form_fields(data)
        return data


class StrictMultiPartParser(MultiPartParser):
    """Multipart bodies: the same check on the fields (the files are checked by whoever reads them)."""

    def parse(self, stream, media_type=None, parser_context=None):  # type: ignore[no-untyped-def]
        parsed = super().parse(stream, media_type, parser_context)
        _check_form_fields(parsed.data)
        return parsed
