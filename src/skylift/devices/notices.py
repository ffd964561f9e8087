"""Composing an attempt's upgrade notice, and addressing it in the dialect of the device's channel."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime

from skylift.campaigns.models import Campaign, CampaignDevice
from skylift.campaigns.outbox import Recipient
from skylift.config import Settings
from skylift.devices.dialects import eztcloud, product_key, token
from skylift.devices.dialects.base import MessageId, Notice, NoticeFile
from skylift.devices.identity import LoginStyle
from skylift.devices.topics import upgrade_topic
from skylift.kit import sealing
from skylift.kit.signing import UrlSigner
from skylift.packages.urls import download_path


def download_grant(attempt_id: int, attempt_number: int) -> str:
    """Binds a download URL to one attempt, so that finishing it moves only that attempt."""
    return f"cd{attempt_id}.{attempt_number}"


def parse_grant(grant: str) -> tuple[int, int] | None:
    head, _, attempt = grant.partition(".")
    if not head.startswith("cd") or not head[2:].isdigit() or not attempt.isdigit():
        return None
    return int(head[2:]), int(attempt)


@dataclass(frozen=True)
class SharedNotice:
    """The part of a campaign's notices that is the same for every device: composed once per batch."""

    notice: Notice  # no message id, no URLs yet
    base_url: str | None  # None: the files are fetched over MQTT in blocks
    paths: list[str]  # each file's download path, signed per attempt


class Notifier:
    """Composes the notice of an attempt: signed download URLs (or MQTT stream ids), in no dialect yet."""

    def __init__(self, settings: Settings, signer: UrlSigner) -> None:
        self._settings = settings
        self._signer = signer

    def base_url(self, protocol: str) -> str:
        if protocol == "https":
            https = self._settings.resolved_public_https_url
            if https is None:
                raise RuntimeError("an https campaign needs SKYLIFT_PUBLIC_HTTPS_URL")
            return https
        return self._settings.resolved_public_url

    def compose(self, attempt: CampaignDevice, message_id: MessageId, now: datetime) -> Notice:
        """The notice of the attempt (its campaign and package loaded), with URLs valid from `now`."""
        return self.for_attempt(self.shared(attempt.campaign), attempt.id, attempt.attempts, message_id, now)

    def shared(self, campaign: Campaign) -> SharedNotice:
        """What every notice of the campaign (its package loaded) has in common, composed once."""
        package = campaign.package
        # Over MQTT the device fetches blocks of stream `attempt.id`, file `file.id` (see mqtt_blocks.py).
        stream = campaign.protocol == "mqtt"
        files = [
            NoticeFile(
                name=f.name,
                size=f.size,
                url=None,
                md5=f.md5,
                sha256=f.sha256,
                stream_file_id=f.id if stream else None,
            )
            for f in package.files
        ]
        notice = Notice(
            message_id=0,
            module=package.module,
            version=package.version,
            sign_method=package.sign_method,
            files=files,
            ext_data=dict(campaign.ext_data or {}),
            is_diff=package.type == "diff",
        )
        paths = [download_path(f) for f in package.files]
        return SharedNotice(notice, None if stream else self.base_url(campaign.protocol), paths)

    def for_attempt(
        self, shared: SharedNotice, attempt_id: int, attempt_number: int, message_id: MessageId, now: datetime
    ) -> Notice:
        """One attempt's notice: its message id, and its own signed URLs (or its stream over MQTT)."""
        if shared.base_url is None:
            return replace(shared.notice, message_id=message_id, stream_id=attempt_id)
        grant = download_grant(attempt_id, attempt_number)
        ttl = self._settings.download_url_ttl_seconds
        files = [
            replace(file, url=self._signer.sign(shared.base_url, path, ttl, now, grant))
            for file, path in zip(shared.notice.files, shared.paths, strict=True)
        ]
        return replace(shared.notice, message_id=message_id, files=files)


def addressed(recipient: Recipient, notice: Notice) -> tuple[str, bytes]:
    """(topic, payload) of a notice: where the device listens, in that channel's dialect.

    A sub-device hears through its gateway (`gateway_command_send/...`), an EZtCloud device on
    `command_send/{username}` once it has subscribed there (both in the device's command topic); every
    other device on its upgrade topic, in the envelope of its login. Only the credential the topic
    needs is unsealed."""
    if recipient.command_topic_sealed is not None:
        command_topic = sealing.keyring().open(recipient.command_topic_sealed)
        module = eztcloud.module_label(notice.module)
        if recipient.gateway_id is not None:
            address = recipient.address or recipient.name
            return command_topic, eztcloud.render_gateway_command(address, notice, module, notice.message_id)
        return command_topic, eztcloud.render_command(notice, module, notice.message_id)
    if recipient.login_style == LoginStyle.PRODUCT_KEY:
        return upgrade_topic(f"{recipient.product_key}/{recipient.name}"), product_key.render_notice(
            notice, recipient.notice_style
        )
    return upgrade_topic(sealing.keyring().open(recipient.access_token_sealed)), token.render_notice(notice)
