"""The e-mail channel: one plain-text message per outbox item, over SMTP (stdlib ``smtplib``).

Blocking by nature, so the sender runs ``send_mail`` in a thread. SMTP's codes mean the
opposite of HTTP's for retries: 4xx is transient (try again later), 5xx permanent (a refused
address will not start working), which ``worth_retrying`` applies.
"""

from __future__ import annotations

import smtplib
import ssl
from collections.abc import Callable, Mapping
from datetime import datetime
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr

from service.model import Delivery, OutboxItem

EVENT_ID_HEADER = "X-Vigil-Event-Id"


class SmtpConfig(BaseModel):
    """Where e-mail notifications are handed over, and as whom."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    host: str = Field(min_length=1)
    port: int = Field(25, ge=1, le=65535)
    sender: str = Field(pattern=r"^[^@\s]+@[^@\s]+$")
    starttls: bool = False
    username: str | None = None
    password: SecretStr | None = None
    timeout_s: float = Field(10.0, gt=0)


def subject_of(item: OutboxItem) -> str:
    """A short subject line: the event in words and the ticket."""
    words = item.event.replace(".", " ").replace("_", " ")
    ticket = item.payload.get("ticket_id")
    return f"[vigil] {words}" + (f" — ticket {ticket}" if ticket else "")


def body_of(item: OutboxItem) -> str:
    """The text: a recipient's ``message`` first (patients read only that), then the facts."""
    payload: Mapping[str, Any] = item.payload
    lines = [str(payload["message"]), ""] if "message" in payload else []
    lines += [f"{key}: {value}" for key, value in payload.items() if key != "message"]
    return "\n".join(lines) + "\n"


def message_for(item: OutboxItem, config: SmtpConfig, at: datetime) -> EmailMessage:
    """The e-mail of one outbox item (the same event id header on every try)."""
    mail = EmailMessage()
    mail["From"] = config.sender
    mail["To"] = item.target
    mail["Subject"] = subject_of(item)
    mail["Date"] = format_datetime(at)
    mail["Message-ID"] = make_msgid(domain=config.sender.split("@", 1)[1])
    mail[EVENT_ID_HEADER] = item.event_id
    mail.set_content(body_of(item))
    return mail


Connect = Callable[[SmtpConfig], smtplib.SMTP]


def _connect(config: SmtpConfig) -> smtplib.SMTP:
    client = smtplib.SMTP(config.host, config.port, timeout=config.timeout_s)
    try:
        if config.starttls:
            client.starttls(context=ssl.create_default_context())
        if config.username is not None:
            secret = config.password.get_secret_value() if config.password else ""
            client.login(config.username, secret)
    except BaseException:
        client.close()
        raise
    return client


def send_mail(
    item: OutboxItem, number: int, config: SmtpConfig, at: datetime, connect: Connect = _connect
) -> Delivery:
    """One SMTP attempt for ``item`` (attempt ``number``), as a ``Delivery``; never raises."""
    status: int | None = None
    error = ""
    try:
        with connect(config) as client:
            refused = client.send_message(message_for(item, config, at))
        if refused:  # only one recipient, so a partial refusal is a refusal
            status, text = next(iter(refused.values()))
            error = f"SMTPRecipientsRefused: {status} {text!r}"
    except smtplib.SMTPRecipientsRefused as exc:
        status, text = next(iter(exc.recipients.values()))
        error = f"SMTPRecipientsRefused: {status} {text!r}"
    except smtplib.SMTPResponseException as exc:
        status, error = exc.smtp_code, f"{type(exc).__name__}: {exc.smtp_code} {exc.smtp_error!r}"
    except (smtplib.SMTPException, OSError) as exc:
        error = f"{type(exc).__name__}: {exc}"
    return Delivery(
        event_id=item.event_id,
        url=f"mailto:{item.target}",
        attempt=number,
        at=at,
        status=status if error else 250,
        ok=not error,
        error=error,
    )


def worth_retrying(delivery: Delivery) -> bool:
    """True for a failed attempt that may succeed later: no answer, or a 4xx (transient) code."""
    if delivery.ok:
        return False
    return delivery.status is None or 400 <= delivery.status < 500
