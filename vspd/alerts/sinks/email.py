"""email: SMTP with STARTTLS and authentication; the snapshot attached."""

from __future__ import annotations

import smtplib
import ssl
from email.message import EmailMessage
from email.utils import make_msgid

from vspd.alerts.errors import DeliveryError
from vspd.alerts.sinks import clip_filename
from vspd.alerts.sinks.payload import clip_text, snapshot_url
from vspd.alerts.store import ClipRecord, EventRecord
from vspd.config.model import AlertsConfig
from vspd.config.model import EmailSink as EmailConfig

# Mail servers commonly refuse messages over 10-25 MB: a bigger clip goes as its link.
ATTACHMENT_MAX_BYTES = 10 * 1024 * 1024


class EmailSink:
    def __init__(self, config: EmailConfig, alerts: AlertsConfig) -> None:
        self.name = config.name
        self._config = config
        self._alerts = alerts

    def deliver(self, event: EventRecord, snapshot: bytes | None) -> None:
        config = self._config
        message = EmailMessage()
        message["Subject"] = f"[vspd {event.severity}] {event.label} on {event.camera}"
        message["From"] = config.sender
        message["To"] = ", ".join(config.recipients)
        # Stable id: a repeat after an ambiguous failure threads as the same mail.
        message["Message-ID"] = make_msgid(idstring=event.key.replace("/", "."), domain="vspd")
        link = snapshot_url(self._alerts, event)
        message.set_content(f"{event.message}\n\n{link}\n" if link else f"{event.message}\n")
        if snapshot is not None:
            message.add_attachment(
                snapshot, maintype="image", subtype="jpeg", filename=f"{event.camera}.jpg"
            )
        self._send(message)

    def deliver_clip(self, event: EventRecord, clip: ClipRecord, video: bytes | None) -> None:
        config = self._config
        message = EmailMessage()
        message["Subject"] = f"[vspd] clip: {event.label} on {event.camera}"
        message["From"] = config.sender
        message["To"] = ", ".join(config.recipients)
        message["Message-ID"] = make_msgid(
            idstring=event.key.replace("/", ".") + ".clip", domain="vspd"
        )
        message["X-Vspd-Event-Id"] = event.key
        message.set_content(clip_text(event, clip, self._alerts) + "\n")
        if video is not None and len(video) <= ATTACHMENT_MAX_BYTES:
            subtype = (clip.content_type or "video/webm").split("/")[1]
            message.add_attachment(
                video, maintype="video", subtype=subtype, filename=clip_filename(event, clip)
            )
        self._send(message)

    def _send(self, message: EmailMessage) -> None:
        config = self._config
        try:
            with smtplib.SMTP(config.host, config.port, timeout=config.timeout_s) as smtp:
                if config.starttls:
                    smtp.starttls(context=ssl.create_default_context(cafile=config.ca_file or None))
                if config.username:
                    password = config.password.get_secret_value() if config.password else ""
                    smtp.login(config.username, password)
                smtp.send_message(message)
        except smtplib.SMTPAuthenticationError as exc:
            raise DeliveryError(f"SMTP login refused: {exc.smtp_code}", retriable=False) from None
        except smtplib.SMTPRecipientsRefused as exc:
            raise DeliveryError(
                f"SMTP recipients refused: {list(exc.recipients)}", retriable=False
            ) from None
        except (smtplib.SMTPException, OSError, ssl.SSLError) as exc:
            raise DeliveryError(f"SMTP {config.host}:{config.port}: {exc}") from None

    def close(self) -> None:
        pass
