"""One Redis subscription per process that hands each user's updates to their open sockets.

The hub knows whether it is live: it pings Redis every PING_SECONDS on its subscription and
counts Redis as gone when nothing (not even a pong) came back for SILENCE_SECONDS, or when a
read or connect fails. Going down, it tells every socket (HUB_DOWN), and the socket closes
so that its page falls back to polling; coming back, it tells every socket to resend the
current state (RESYNC), since messages published while it was away are lost.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from collections import defaultdict
from typing import Any

import redis

from credit_app.services.live import CHANNEL_PREFIX

log = logging.getLogger(__name__)

HUB_DOWN = {"type": "HUB_DOWN"}
RESYNC = {"type": "RESYNC"}
PING_SECONDS = 2.0
SILENCE_SECONDS = 6.0
READ_SECONDS = 0.5


class CreditHub:
    """Fan-out of Redis credit messages to local subscribers (one queue per socket)."""

    def __init__(
        self,
        connection: redis.Redis,
        ping_seconds: float = PING_SECONDS,
        silence_seconds: float = SILENCE_SECONDS,
    ) -> None:
        self._connection = connection
        self._subscribers: dict[int, set[queue.SimpleQueue]] = defaultdict(set)
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._stop = threading.Event()
        self._live = False
        self.ping_seconds = ping_seconds
        self.silence_seconds = silence_seconds

    @property
    def is_live(self) -> bool:
        """Whether the subscription is up, so that published changes reach the sockets."""
        return self._live

    def subscribe(self, user_id: int) -> queue.SimpleQueue:
        """Register a socket of `user_id`; its queue receives that user's messages only."""
        self._ensure_listening()
        inbox: queue.SimpleQueue = queue.SimpleQueue()
        with self._lock:
            self._subscribers[user_id].add(inbox)
        return inbox

    def unsubscribe(self, user_id: int, inbox: queue.SimpleQueue) -> None:
        with self._lock:
            sockets = self._subscribers.get(user_id)
            if sockets is not None:
                sockets.discard(inbox)
                if not sockets:
                    del self._subscribers[user_id]

    def dispatch(self, channel: str, data: bytes | str) -> int:
        """Deliver one Redis message to the user's local sockets; returns how many got it."""
        user_part = channel.removeprefix(CHANNEL_PREFIX)
        if not user_part.isdigit():
            return 0
        try:
            message: dict[str, Any] = json.loads(data)
        except ValueError:
            log.warning("dropping a malformed credit message on %s", channel)
            return 0
        with self._lock:
            sockets = list(self._subscribers.get(int(user_part), ()))
        for inbox in sockets:
            inbox.put(message)
        return len(sockets)

    def broadcast(self, message: dict[str, Any]) -> int:
        """Hand `message` to every local socket; returns how many."""
        with self._lock:
            sockets = [inbox for inboxes in self._subscribers.values() for inbox in inboxes]
        for inbox in sockets:
            inbox.put(message)
        return len(sockets)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _ensure_listening(self) -> None:
        with self._lock:
            if self._thread is not None and self._thread.is_alive():
                return
            self._ready.clear()
            self._thread = threading.Thread(target=self._listen, name="credit-hub", daemon=True)
            self._thread.start()
        self._ready.wait(timeout=5)

    def _set_live(self, live: bool) -> None:
        was_live, self._live = self._live, live
        if live and not was_live:
            self.broadcast(RESYNC)
        elif was_live and not live:
            self.broadcast(HUB_DOWN)

    def _listen(self) -> None:
        backoff = 0.5
        while not self._stop.is_set():
            pubsub = self._connection.pubsub()
            try:
                self._follow(pubsub)
                backoff = 0.5
            except (redis.RedisError, OSError) as exc:
                if self._live:
                    log.warning(
                        "credit hub lost Redis (%s: %s); sockets fall back to polling",
                        type(exc).__name__,
                        exc,
                    )
                self._set_live(False)
                self._ready.set()
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 10)
            finally:
                try:
                    pubsub.reset()
                except (redis.RedisError, OSError):
                    log.debug("closing the hub's dead subscription failed")

    def _follow(self, pubsub: redis.client.PubSub) -> None:
        """Subscribe and deliver until Redis fails or falls silent. Raises RedisError."""
        pubsub.psubscribe(f"{CHANNEL_PREFIX}*")
        heard = time.monotonic()
        pinged = 0.0
        while not self._stop.is_set():
            now = time.monotonic()
            if now - pinged >= self.ping_seconds:
                pubsub.ping()
                pinged = now
            if now - heard > self.silence_seconds:
                raise redis.TimeoutError(f"no answer from Redis for {self.silence_seconds:.0f} s")
            item = pubsub.get_message(timeout=READ_SECONDS)
            if item is None:
                continue
            heard = time.monotonic()
            if item["type"] == "psubscribe":
                self._set_live(True)
                self._ready.set()
                log.info("credit hub subscribed")
            elif item["type"] == "pmessage":
                channel = item["channel"]
                self.dispatch(
                    channel.decode() if isinstance(channel, bytes) else channel, item["data"]
                )
