"""Redis: the read-through cache, the login tokens and the active users.

Cache keys: ``metric:<METRIC-ID>``, ``domain:<id>``, ``objective:<id>`` (one item,
JSON) and ``metrics:list``, ``domains:list``, ``objectives:list`` (hashes, one
field per ``<limit>:<offset>`` page), all with ``redis.ttl_seconds``. A write
deletes the item's key and its list hash. ``cache_hits_total`` and
``cache_misses_total`` are labelled with the key's prefix (``metric``,
``metrics_list``...), never the full key. With the ``cache_bypass`` fault every
lookup is a miss and Redis is neither read nor filled.

A Redis failure on a lookup is a miss (the database answers, ``errors_total``
error_type="cache" counts it); logins and token checks need Redis and fail
with 503 (``CacheUnavailable``).

Tokens: ``auth:token:<sha256 of the token>`` -> username, for
``TOKEN_TTL_SECONDS``; the token itself is never stored or logged.
Active users: the sorted set ``auth:active_users`` (member username, score the
last login or authenticated request), counted over ``active_user_window_seconds``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import secrets
import threading
import time
from typing import Any

import redis
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

TOKEN_TTL_SECONDS = 3600
ACTIVE_USERS_KEY = "auth:active_users"
# An authenticated user's activity is written at most this often per instance.
ACTIVE_TOUCH_SECONDS = 5.0

log = logging.getLogger("mdl_api")


class CacheUnavailable(Exception):
    """Redis did not answer (logins and token checks cannot proceed)."""


class Cache:
    def __init__(self, cfg: dict, metrics: Any, faults: Any):
        rc = cfg["redis"]
        self.ttl = rc["ttl_seconds"]
        self.window = float(cfg["active_user_window_seconds"])
        self.metrics = metrics
        self.faults = faults
        self.client = redis.Redis(
            host=rc["host"],
            port=rc["port"],
            db=rc["db"],
            password=rc["password"] or None,
            socket_timeout=2,
            socket_connect_timeout=2,
            health_check_interval=30,
            # One quick retry (a connection the server closed), not redis-py's default of
            # three with up to seconds of backoff: a cache must fail fast.
            retry=Retry(ExponentialBackoff(cap=0.05, base=0.01), 1),
        )
        self._touched: dict[str, float] = {}
        self._touch_lock = threading.Lock()

    def _failed(self, exc: Exception, what: str) -> None:
        self.metrics.error("cache", type(exc).__name__)
        log.warning("cache %s failed: %s", what, exc, extra={"fields": {"error": type(exc).__name__}})

    # -- read-through cache -------------------------------------------------
    def get(self, key: str, label: str) -> Any:
        """The cached JSON value of ``key`` or None (a miss); counted under ``label``."""
        return self._lookup(label, "get", lambda: self.client.get(key))

    def set(self, key: str, value: Any) -> None:
        if self.faults.cache_bypass:
            return
        try:
            self.client.set(key, json.dumps(value, separators=(",", ":")), ex=self.ttl)
        except redis.RedisError as exc:
            self._failed(exc, "set")

    def hget(self, key: str, field: str, label: str) -> Any:
        return self._lookup(label, "hget", lambda: self.client.hget(key, field))

    def _lookup(self, label: str, operation: str, fetch) -> Any:
        """One cache read: a miss when bypassed, failing or absent, else the decoded hit."""
        if self.faults.cache_bypass:
            self.metrics.cache_miss(label)
            return None
        try:
            raw = fetch()
        except redis.RedisError as exc:
            self._failed(exc, operation)
            raw = None
        if raw is None:
            self.metrics.cache_miss(label)
            return None
        self.metrics.cache_hit(label)
        return json.loads(raw)

    def hset(self, key: str, field: str, value: Any) -> None:
        if self.faults.cache_bypass:
            return
        try:
            pipe = self.client.pipeline(transaction=False)
            pipe.hset(key, field, json.dumps(value, separators=(",", ":")))
            pipe.expire(key, self.ttl, nx=True)
            pipe.execute()
        except redis.RedisError as exc:
            self._failed(exc, "hset")

    def delete(self, *keys: str) -> None:
        """Invalidate ``keys`` (also under cache_bypass, so nothing stale is left when it ends)."""
        try:
            self.client.delete(*keys)
        except redis.RedisError as exc:
            self._failed(exc, "delete")

    # -- health and size ----------------------------------------------------
    def ping(self) -> None:
        try:
            self.client.ping()
        except redis.RedisError as exc:
            raise CacheUnavailable(str(exc) or type(exc).__name__) from exc

    def used_memory(self) -> int:
        return int(self.client.info("memory")["used_memory"])

    # -- tokens -------------------------------------------------------------
    @staticmethod
    def _token_key(token: str) -> str:
        return "auth:token:" + hashlib.sha256(token.encode()).hexdigest()

    def issue_token(self, username: str) -> str:
        token = secrets.token_urlsafe(32)
        try:
            self.client.set(self._token_key(token), username, ex=TOKEN_TTL_SECONDS)
        except redis.RedisError as exc:
            raise CacheUnavailable(str(exc)) from exc
        return token

    def token_user(self, token: str) -> str | None:
        try:
            user = self.client.get(self._token_key(token))
        except redis.RedisError as exc:
            raise CacheUnavailable(str(exc)) from exc
        return user.decode() if user is not None else None

    # -- active users -------------------------------------------------------
    def touch_user(self, username: str, force: bool = False) -> None:
        """Record activity of ``username`` and refresh mdl_active_users (at most every few seconds per user)."""
        now = time.time()
        with self._touch_lock:
            if not force and now - self._touched.get(username, 0.0) < ACTIVE_TOUCH_SECONDS:
                return
            self._touched[username] = now
            if len(self._touched) > 10000:
                self._touched.clear()
        try:
            pipe = self.client.pipeline(transaction=False)
            pipe.zadd(ACTIVE_USERS_KEY, {username: now})
            pipe.zremrangebyscore(ACTIVE_USERS_KEY, "-inf", now - self.window)
            pipe.zcard(ACTIVE_USERS_KEY)
            self.metrics.set_active_users(pipe.execute()[-1])
        except redis.RedisError as exc:
            self._failed(exc, "active users")

    def refresh_active_users(self) -> None:
        now = time.time()
        pipe = self.client.pipeline(transaction=False)
        pipe.zremrangebyscore(ACTIVE_USERS_KEY, "-inf", now - self.window)
        pipe.zcard(ACTIVE_USERS_KEY)
        self.metrics.set_active_users(pipe.execute()[-1])
