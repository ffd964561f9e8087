"""ThingsPanel devices (seed 002): the access token names the device in its topics."""

from __future__ import annotations

from typing import Any

from skylift.devices.dialects.base import MessageId, Notice, NoticeFile, dump_payload
from skylift.registry.models import DEFAULT_MODULE

# Seed 002's example spells the method this way; Alibaba's SDK compares it case-sensitively.
SIGN_METHOD_NAMES = {"MD5": "Md5", "SHA256": "SHA256"}


def _file_location(notice: Notice, file: NoticeFile, url_key: str, stream_key: str) -> dict[str, Any]:
    if notice.stream_id is None:
        return {url_key: file.url}
    return {stream_key: file.stream_file_id}


def file_fields(notice: Notice) -> dict[str, Any]:
    """size/url/sign for a one-file package; a `files` list when there are several (Alibaba's form).

    Over MQTT (Alibaba's block download) `dProtocol`, `streamId` and `streamFileId` stand in for the URL."""
    fields: dict[str, Any] = {}
    if len(notice.files) == 1:
        only = notice.files[0]
        fields["size"] = only.size
        fields.update(_file_location(notice, only, "url", "streamFileId"))
        fields.update({"md5": only.md5, "sign": notice.sign_of(only)})
    else:
        fields["files"] = [
            {
                "fileName": f.name,
                "fileSize": f.size,
                **_file_location(notice, f, "fileUrl", "streamFileId"),
                "fileMd5": f.md5,
                "fileSign": notice.sign_of(f),
            }
            for f in notice.files
        ]
    if notice.stream_id is not None:
        fields.update({"dProtocol": "mqtt", "streamId": notice.stream_id})
    return fields


def render_notice(notice: Notice) -> bytes:
    params: dict[str, Any] = {"version": notice.version}
    fields = file_fields(notice)
    if notice.stream_id is None:
        fields.pop("md5", None)  # seed 002's notice has no md5; an MQTT notice carries it as Alibaba's does
    params.update(fields)
    params["signMethod"] = SIGN_METHOD_NAMES[notice.sign_method]
    if notice.module != DEFAULT_MODULE:
        params["module"] = notice.module
    if notice.is_diff:
        params["isDiff"] = 1  # Alibaba's field
    # extData last: Link SDK 4 takes the first matching key anywhere in the payload.
    if notice.ext_data:
        params["extData"] = notice.ext_data
    return _envelope(notice.message_id, params)


def render_nothing_pending(message_id: MessageId) -> bytes:
    """The answer to a request when no upgrade is open for the module: the envelope with empty params."""
    return _envelope(message_id, {})


def _envelope(message_id: MessageId, params: dict[str, Any]) -> bytes:
    return dump_payload({"id": str(message_id), "code": 200, "params": params})
