"""Outgoing e-mail over SMTP (``CUEFAST_SMTP_URL``), stdlib ``smtplib`` run in a thread.

Two senders use it: on_failure notices (engine/notices.py) and the login's magic links
(services/login.py, handed a ``Mailer`` by the runtime).

``smtp://[user:pass@]host[:port][?from=addr]`` (port 25 by default) or ``smtps://…`` (implicit
TLS, port 465). ``smtp://`` upgrades the connection with STARTTLS whenever the server offers it
(certificate and host name verified; a failed upgrade fails the send, never falls back to
plain text). Credentials are only ever sent over TLS: with a user name configured, a server
that does not offer STARTTLS gets nothing (``InsecureTransport``; the notice is retried and
then given up, like any failed send). The password is never logged. Certificates are checked
against the system's CA store (``SSL_CERT_FILE`` / ``SSL_CERT_DIR`` name others).
"""

from __future__ import annotations

import asyncio
import smtplib
import ssl
from email.message import EmailMessage
from urllib.parse import parse_qs, unquote, urlsplit

from cuefast.errors import ConfigError


class InsecureTransport(smtplib.SMTPException):
    """The server offers no TLS, and credentials are configured: they are not sent in clear."""


class Mailer:
    def __init__(self, url: str, timeout_s: float = 10.0, *, context: ssl.SSLContext | None = None) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("smtp", "smtps") or not parts.hostname:
            raise ConfigError(
                "CUEFAST_SMTP_URL must look like smtp://host:port or smtps://user:pass@host:port"
            )
        self.tls = parts.scheme == "smtps"
        self.host = parts.hostname
        self.port = parts.port or (465 if self.tls else 25)
        self.user = unquote(parts.username or "")
        self.password = unquote(parts.password or "")
        self.sender = parse_qs(parts.query).get("from", ["cuefast@localhost"])[0]
        self.timeout_s = timeout_s
        self.context = context  # None: the system's default verification (built per send)

    def __repr__(self) -> str:  # never the password
        return f"Mailer({'smtps' if self.tls else 'smtp'}://{self.host}:{self.port})"

    def message(self, to: str, subject: str, text: str) -> EmailMessage:
        msg = EmailMessage()
        msg["From"] = self.sender
        msg["To"] = to
        msg["Subject"] = subject
        msg.set_content(text)
        return msg

    def _send(self, msg: EmailMessage) -> None:
        context = self.context or ssl.create_default_context()
        smtp: smtplib.SMTP
        if self.tls:
            smtp = smtplib.SMTP_SSL(self.host, self.port, timeout=self.timeout_s, context=context)
        else:
            smtp = smtplib.SMTP(self.host, self.port, timeout=self.timeout_s)
        with smtp:
            if not self.tls:
                smtp.ehlo()
                if smtp.has_extn("starttls"):
                    smtp.starttls(context=context)  # verifies the certificate; raises on failure
                    smtp.ehlo()
                elif self.user:
                    raise InsecureTransport(
                        f"{self.host}:{self.port} offers no STARTTLS; SMTP credentials are not sent in clear"
                    )
            if self.user:
                smtp.login(self.user, self.password)
            smtp.send_message(msg)

    async def send(self, msg: EmailMessage) -> None:
        await asyncio.to_thread(self._send, msg)
