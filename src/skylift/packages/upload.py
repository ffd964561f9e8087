"""Streaming multipart upload: each file part goes straight to storage while it is hashed.

Nothing holds a whole file in memory, and a limit (size, extension) is enforced while the bytes
arrive, so a refused 1 GB upload costs no more than the bytes read before the refusal.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from urllib.parse import unquote_to_bytes

from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, MultipartState, parse_options_header

from skylift.kit.errors import BadRequest, Invalid, TooLarge
from skylift.packages.storage import UploadSink

MAX_FIELD_BYTES = 16 * 1024
MAX_FILES = 16
MAX_FILENAME_LENGTH = 255
# RFC 2046: a boundary is 1 to 70 characters.
MAX_BOUNDARY_LENGTH = 70
# `; key=value` or `; key="quoted \" value"` in a part's Content-Disposition.
_PARAM = re.compile(r';\s*([^\s=;]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^;]*)')


@dataclass
class ReceivedFile:
    filename: str
    sink: UploadSink


@dataclass
class ReceivedForm:
    fields: dict[str, str] = field(default_factory=dict)
    files: list[ReceivedFile] = field(default_factory=list)

    async def discard(self) -> None:
        for received in self.files:
            await received.sink.abort()


@dataclass
class UploadLimits:
    max_file_bytes: int
    allowed_extensions: list[str]
    file_field: str = "file"


def has_allowed_extension(filename: str, allowed: list[str]) -> bool:
    lowered = filename.lower()
    return any(lowered.endswith(ext.lower()) for ext in allowed)


@dataclass
class _Part:
    headers: dict[str, bytes] = field(default_factory=dict)
    name: str = ""
    filename: str | None = None
    value: bytearray = field(default_factory=bytearray)
    sink: UploadSink | None = None


class _PartEvents:
    """Collects the parser's synchronous callbacks so they can be handled with awaits afterwards."""

    def __init__(self) -> None:
        self.events: list[tuple[str, bytes]] = []
        self._field = bytearray()
        self._value = bytearray()

    def callbacks(self) -> dict[str, object]:
        return {
            "on_part_begin": lambda: self.events.append(("begin", b"")),
            "on_header_field": lambda d, s, e: self._field.extend(d[s:e]),
            "on_header_value": lambda d, s, e: self._value.extend(d[s:e]),
            "on_header_end": self._header_end,
            "on_headers_finished": lambda: self.events.append(("headers", b"")),
            "on_part_data": lambda d, s, e: self.events.append(("data", bytes(d[s:e]))),
            "on_part_end": lambda: self.events.append(("end", b"")),
        }

    def _header_end(self) -> None:
        line = bytes(self._field) + b"\x00" + bytes(self._value)
        self.events.append(("header", line))
        self._field.clear()
        self._value.clear()


def _boundary(content_type: str | None) -> bytes:
    kind, params = parse_options_header(content_type)
    if kind != b"multipart/form-data" or b"boundary" not in params:
        raise Invalid("the upload must be multipart/form-data", field="file")
    boundary = params[b"boundary"]
    if not 0 < len(boundary) <= MAX_BOUNDARY_LENGTH:
        raise Invalid(f"a multipart boundary is 1 to {MAX_BOUNDARY_LENGTH} characters", field="file")
    return boundary


def disposition_params(raw: bytes) -> dict[str, str]:
    """The parameters of a part's Content-Disposition, as UTF-8 text.

    Clients send non-ASCII names as raw UTF-8 (browsers, curl, httpx) or as RFC 5987 `name*=`;
    both are read, and the extended form wins when a part carries both."""
    try:
        text = raw.decode()
    except UnicodeDecodeError:
        raise BadRequest("a part's Content-Disposition is not UTF-8", field="file") from None
    params: dict[str, str] = {}
    extended: dict[str, str] = {}
    for match in _PARAM.finditer(text):
        key, value = match[1].lower(), match[2].strip()
        if len(value) >= 2 and value[0] == value[-1] == '"':
            value = value[1:-1].replace("\\\\", "\\").replace('\\"', '"')
        if key.endswith("*"):
            extended[key[:-1]] = _rfc5987(value)
        else:
            params[key] = value
    return params | extended


def _rfc5987(value: str) -> str:
    """`charset'language'percent-encoded`; RFC 5987 knows two charsets."""
    charset, _, rest = value.partition("'")
    _, _, encoded = rest.partition("'")
    if charset.lower() not in ("utf-8", "iso-8859-1"):
        raise BadRequest(f"an extended parameter is UTF-8 or ISO-8859-1, not {charset[:40]!r}", field="file")
    try:
        return unquote_to_bytes(encoded).decode(charset)
    except UnicodeDecodeError:
        raise BadRequest(f"cannot decode the extended parameter {value[:80]!r}", field="file") from None


def clean_filename(raw: str) -> str:
    """The last path component of a part's file name; names that cannot be a file's are refused."""
    filename = raw.replace("\\", "/").rsplit("/", 1)[-1]
    if not filename or filename in (".", ".."):
        raise Invalid("each file part needs a file name", field="file")
    if len(filename) > MAX_FILENAME_LENGTH:
        raise Invalid(f"a file name is at most {MAX_FILENAME_LENGTH} characters", field="file")
    if any(unicodedata.category(ch) == "Cc" for ch in filename):
        raise Invalid(f"the file name {filename!r} contains control characters", field="file")
    return filename


async def receive_form(
    content_type: str | None,
    body: AsyncIterator[bytes],
    open_sink: Callable[[], UploadSink],
    limits: UploadLimits,
) -> ReceivedForm:
    """Parse a multipart body; file parts named `limits.file_field` are streamed into new sinks."""
    events = _PartEvents()
    parser = MultipartParser(_boundary(content_type), events.callbacks())  # type: ignore[arg-type]
    form = ReceivedForm()
    part = _Part()
    try:
        async for chunk in body:
            try:
                parser.write(chunk)
            except FormParserError as exc:
                raise BadRequest(f"the upload is not valid multipart/form-data: {exc}", field="file") from None
            for kind, data in events.events:
                part = await _handle(kind, data, part, form, open_sink, limits)
            events.events.clear()
        parser.finalize()
        if parser.state != MultipartState.END:
            raise BadRequest("the upload ended before the closing multipart boundary", field="file")
        for received in form.files:
            await received.sink.finish()
    except BaseException:
        await form.discard()
        if part.sink is not None and all(f.sink is not part.sink for f in form.files):
            await part.sink.abort()
        raise
    return form


async def _handle(
    kind: str,
    data: bytes,
    part: _Part,
    form: ReceivedForm,
    open_sink: Callable[[], UploadSink],
    limits: UploadLimits,
) -> _Part:
    if kind == "begin":
        return _Part()
    if kind == "header":
        name, _, value = data.partition(b"\x00")
        part.headers[name.decode("latin-1").lower()] = value
    elif kind == "headers":
        _start_part(part, form, open_sink, limits)
    elif kind == "data":
        await _part_data(part, data, limits)
    elif kind == "end" and part.sink is not None:
        form.files.append(ReceivedFile(filename=part.filename or "", sink=part.sink))
        part.sink = None
    elif kind == "end":
        form.fields[part.name] = part.value.decode("utf-8", "replace")
    return part


def _start_part(part: _Part, form: ReceivedForm, open_sink: Callable[[], UploadSink], limits: UploadLimits) -> None:
    params = disposition_params(part.headers.get("content-disposition", b""))
    part.name = params.get("name", "")
    raw_filename = params.get("filename")
    if raw_filename is None:
        return
    if part.name != limits.file_field:
        raise Invalid(f"unexpected file field {part.name!r}; send files as {limits.file_field!r}", field=part.name)
    filename = clean_filename(raw_filename)
    if not has_allowed_extension(filename, limits.allowed_extensions):
        raise Invalid(
            f"{filename!r} has an extension that is not allowed; allowed: {', '.join(limits.allowed_extensions)}",
            field=limits.file_field,
        )
    if len(form.files) >= MAX_FILES:
        raise Invalid(f"a package has at most {MAX_FILES} files", field=limits.file_field)
    part.filename = filename
    part.sink = open_sink()


async def _part_data(part: _Part, data: bytes, limits: UploadLimits) -> None:
    if part.sink is None:
        if len(part.value) + len(data) > MAX_FIELD_BYTES:
            raise Invalid(f"field {part.name!r} is too long", field=part.name)
        part.value.extend(data)
        return
    if part.sink.size + len(data) > limits.max_file_bytes:
        limit_mb = limits.max_file_bytes // (1024 * 1024)
        raise TooLarge(f"{part.filename!r} is larger than the limit of {limit_mb} MB", field=limits.file_field)
    await part.sink.write(data)
