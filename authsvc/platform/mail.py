"""Mail delivery: one small interface, two backends, and a queue that keeps sending
off the request path.

- `OutboxMailer` (MAIL_BACKEND=outbox, the default): keeps messages in memory and logs
  recipient and subject (never the body: it holds single-use tokens). For development
  and tests.
- `SmtpMailer` (MAIL_BACKEND=smtp): stdlib smtplib in a worker thread, with a bounded
  timeout, optional STARTTLS and login.

`MailQueue` accepts a message at once and delivers it in the background; a failed
delivery is logged and retried with backoff (MAIL_RETRIES times), then logged as lost.
Queued mail lives in this process only: a crash loses it, and the user asks again
(resend-verification, forgot-password)."""

from __future__ import annotations

import asyncio
import logging
import smtplib
import ssl
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Protocol

log = logging.getLogger("authsvc.mail")


@dataclass(frozen=True, slots=True)
class Message:
    to: str
    subject: str
    body: str


class Mailer(Protocol):
    async def deliver(self, message: Message) -> None: ...


class OutboxMailer:
    def __init__(self) -> None:
        self.messages: list[Message] = []

    async def deliver(self, message: Message) -> None:
        self.messages.append(message)
        log.info("outbox: message to %s: %s", message.to, message.subject)


class SmtpMailer:
    def __init__(
        self,
        *,
        host: str,
        port: int,
        sender: str,
        user: str = "",
        password: str = "",
        starttls: bool = True,
        timeout: float = 10.0,
    ) -> None:
        self._host, self._port, self._sender = host, port, sender
        self._user, self._password = user, password
        self._starttls, self._timeout = starttls, timeout

    async def deliver(self, message: Message) -> None:
        await asyncio.to_thread(self._send, message)

    def _send(self, message: Message) -> None:
        msg = EmailMessage()
        msg["From"] = self._sender
        msg["To"] = message.to
        msg["Subject"] = message.subject
        msg.set_content(message.body)
        with smtplib.SMTP(self._host, self._port, timeout=self._timeout) as smtp:
            if self._starttls:
                smtp.starttls(context=ssl.create_default_context())
            if self._user:
                smtp.login(self._user, self._password)
            smtp.send_message(msg)


class MailQueue:
    def __init__(self, mailer: Mailer, *, retries: int = 5, backoff: float = 1.0) -> None:
        self.mailer = mailer
        self._retries = retries
        self._backoff = backoff
        self._tasks: set[asyncio.Task] = set()

    def send(self, message: Message) -> None:
        """Queue a message; returns at once."""
        task = asyncio.get_running_loop().create_task(self._deliver(message))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _deliver(self, message: Message) -> None:
        delay = self._backoff
        for attempt in range(1, self._retries + 1):
            try:
                await self.mailer.deliver(message)
                return
            except Exception as exc:  # any failure of the mail server is retried
                log.warning(
                    "mail to %s failed (attempt %d/%d): %r", message.to, attempt, self._retries, exc
                )
                if attempt < self._retries:
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 60)
        log.error(
            "mail to %s (%s) lost after %d attempts", message.to, message.subject, self._retries
        )

    async def drain(self, wait: float = 5.0) -> None:
        """Wait for queued mail (at shutdown, and in tests)."""
        await asyncio.sleep(0)  # mail queued by callbacks already scheduled, too
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=wait)

    async def close(self, wait: float = 5.0) -> None:
        """Give queued mail `wait` seconds to go out, then stop."""
        await self.drain(wait)
        for task in list(self._tasks):
            task.cancel()
