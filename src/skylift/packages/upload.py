"""Streaming multipart upload: each file part goes straight to storage while it is hashed.

Nothing holds a whole file in memory, and a limit (size, extension) is enforced while the bytes
arrive, so a refused 1 GB upload costs no more than the bytes read before the refusal.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

from python_multipart.multipart import MultipartParser, parse_options_header

from skylift.kit.errors import Invalid, TooLarge
from skylift.packages.storage import UploadSink

MAX_FIELD_BYTES = 16 * 1024
MAX_FILES = 16


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
    headers: dict[str, str] = field(default_factory=dict)
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
    return params[b"boundary"]


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
            parser.write(chunk)
            for kind, data in events.events:
                part = await _handle(kind, data, part, form, open_sink, limits)
            events.events.clear()
        parser.finalize()
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
        part.headers[name.decode("latin-1").lower()] = value.decode("utf-8", "replace")
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
    _, params = parse_options_header(part.headers.get("content-disposition", ""))
    part.name = params.get(b"name", b"").decode("utf-8", "replace")
    raw_filename = params.get(b"filename")
    if raw_filename is None:
        return
    filename = raw_filename.decode("utf-8", "replace").replace("\\", "/").rsplit("/", 1)[-1]
    if part.name != limits.file_field:
        raise Invalid(f"unexpected file field {part.name!r}; send files as {limits.file_field!r}", field=part.name)
    if not filename:
        raise Invalid("each file part needs a file name", field=limits.file_field)
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
