"""One Redis subscription per process that hands each user's updates to their open sockets."""

from __future__ import annotations

import json
import logging
import queue
import threading
from collections import defaultdict
from typing import Any

import redis

from credit_app.live import CHANNEL_PREFIX

log = logging.getLogger(__name__)


class CreditHub:
    """Fan-out of Redis credit messages to local subscribers (one queue per socket)."""

    def __init__(self, connection: redis.Redis) -> None:
        self._connection = connection
        self._subscribers: dict[int, set[queue.SimpleQueue]] = defaultdict(set)
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()

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

    @property
    def socket_count(self) -> int:
        with self._lock:
            return sum(len(sockets) for sockets in self._subscribers.values())

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

    def _ensure_listening(self) -> None:
        with self._lock:
            if self._thread is not None and self._thread.is_alive():
                return
            self._ready.clear()
            self._thread = threading.Thread(target=self._listen, name="credit-hub", daemon=True)
            self._thread.start()
        self._ready.wait(timeout=5)

    def _listen(self) -> None:
        backoff = 0.5
        while True:
            try:
                pubsub = self._connection.pubsub(ignore_subscribe_messages=True)
                pubsub.psubscribe(f"{CHANNEL_PREFIX}*")
                self._ready.set()
                backoff = 0.5
                for item in pubsub.listen():
                    if item["type"] == "pmessage":
                        channel = item["channel"]
                        self.dispatch(channel.decode() if isinstance(channel, bytes) else channel,
                                      item["data"])
            except redis.RedisError:
                log.warning("credit hub lost Redis; retrying in %.1f s", backoff)
                self._ready.set()
                threading.Event().wait(backoff)
                backoff = min(backoff * 2, 10)
