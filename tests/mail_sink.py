"""A real SMTP server on 127.0.0.1 (aiosmtpd, in its own thread) that keeps what it receives."""

from __future__ import annotations

import email
import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from email.message import Message

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from tests.official.server import free_port

LINK = re.compile(r"https?://\S+/v1/auth/verify\?token=[0-9a-f]{64}&device_code=\S+")


class Sink:
    """aiosmtpd handler: the messages received, in order."""

    def __init__(self) -> None:
        self.messages: list[Message] = []
        self._changed = threading.Condition()

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        with self._changed:
            self.messages.append(email.message_from_bytes(bytes(envelope.content or b"")))
            self._changed.notify_all()
        return "250 OK"

    def wait_for(self, to: str, timeout: float = 30.0) -> Message:
        """The first message to ``to`` (waits for it)."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                for msg in self.messages:
                    if msg["To"] == to:
                        return msg
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"no mail to {to} within {timeout} s")
                self._changed.wait(left)

    def link(self, to: str, timeout: float = 30.0) -> str:
        """The magic link in the last message to ``to``."""
        self.wait_for(to, timeout)
        with self._changed:
            texts = [str(m.get_payload(decode=True), "utf-8") for m in self.messages if m["To"] == to]
        found = LINK.findall(texts[-1])
        assert found, texts[-1]
        return str(found[0])


@contextmanager
def smtp_sink() -> Iterator[tuple[Sink, int]]:
    """(sink, port): a plain SMTP server (no TLS, no AUTH) on 127.0.0.1 while the block runs."""
    sink = Sink()
    port = free_port()
    controller = Controller(sink, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield sink, port
    finally:
        controller.stop()
