"""Fault injection for test environments: what the alert and runbook tests break on purpose.

``GET/PUT /admin/faults`` (header ``X-Fault-Token``) when ``faults.enabled`` is
true; the configuration refuses that in production. A PUT body replaces the
whole fault set (``{}`` clears everything). The faults:

===================== =========================================================
error_ratio           0..1: share of /api requests answered 500 (errors_total
                      error_type="injected", error_code="500")
latency_seconds       0..60: sleep added to ``latency_ratio`` (0..1, default 1)
                      of the /api requests
hold_connections      0..database.pool_max: pool connections checked out and
                      held until the fault is cleared
cache_bypass          true: every cache lookup is a miss, Redis is not read
fail_logins           true: every login answers 401 (reason "injected")
memory_bytes          0..8 GiB: allocated and touched (RSS grows), freed when
                      cleared
slow_query_seconds    0..60: ``SELECT pg_sleep(s)`` run first, on the same
                      connection, by ``slow_query_ratio`` (0..1, default 1) of
                      the queries
stop                  true: answer 202, then the process exits with status 0
===================== =========================================================
"""

from __future__ import annotations

import random
import threading
from collections.abc import Callable
from typing import Any

MAX_MEMORY_BYTES = 8 << 30
MAX_SECONDS = 60.0
PAGE = 4096


class FaultError(ValueError):
    """A PUT body that is not a valid fault set; the message names the key."""


def _ratio(key: str, v: Any) -> float:
    if isinstance(v, bool) or not isinstance(v, int | float) or not 0 <= v <= 1:
        raise FaultError(f"{key}: expected a number between 0 and 1, got {v!r}")
    return float(v)


def _seconds(key: str, v: Any) -> float:
    if isinstance(v, bool) or not isinstance(v, int | float) or not 0 <= v <= MAX_SECONDS:
        raise FaultError(f"{key}: expected seconds between 0 and {MAX_SECONDS:g}, got {v!r}")
    return float(v)


def _flag(key: str, v: Any) -> bool:
    if not isinstance(v, bool):
        raise FaultError(f"{key}: expected true or false, got {v!r}")
    return v


def _count(key: str, v: Any, maximum: int) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= maximum:
        raise FaultError(f"{key}: expected an integer between 0 and {maximum}, got {v!r}")
    return v


class Faults:
    """The active fault set and what it holds (connections, memory)."""

    def __init__(
        self, enabled: bool, token: str, pool_max: int, pool_timeout: float, on_stop: Callable[[], None] | None = None
    ):
        self.enabled = enabled
        self.token = token
        self._pool_max = pool_max
        self._pool_timeout = pool_timeout
        self._on_stop = on_stop
        self._pool: Any = None
        self._lock = threading.Lock()
        self._rng = random.Random()
        self._held: list = []
        self._memory: bytearray | None = None
        self.active: dict[str, Any] = {}
        # The hot-path values, read without the lock.
        self.error_ratio = 0.0
        self.latency_seconds = 0.0
        self.latency_ratio = 0.0
        self.cache_bypass = False
        self.fail_logins = False
        self.slow_query_seconds = 0.0
        self.slow_query_ratio = 0.0

    def bind_pool(self, pool: Any) -> None:
        self._pool = pool

    # -- hot path -----------------------------------------------------------
    def inject_error(self) -> bool:
        return self.error_ratio > 0 and self._rng.random() < self.error_ratio

    def added_latency(self) -> float:
        if self.latency_seconds > 0 and self._rng.random() < self.latency_ratio:
            return self.latency_seconds
        return 0.0

    def slow_query(self) -> float:
        if self.slow_query_seconds > 0 and self._rng.random() < self.slow_query_ratio:
            return self.slow_query_seconds
        return 0.0

    # -- admin --------------------------------------------------------------
    def parse(self, body: Any) -> dict[str, Any]:
        """The fault set of a PUT body, validated (FaultError naming the key otherwise)."""
        if not isinstance(body, dict):
            raise FaultError("body: expected a JSON object of faults")
        parsers: dict[str, Callable[[str, Any], Any]] = {
            "error_ratio": _ratio,
            "latency_seconds": _seconds,
            "latency_ratio": _ratio,
            "hold_connections": lambda k, v: _count(k, v, self._pool_max),
            "cache_bypass": _flag,
            "fail_logins": _flag,
            "memory_bytes": lambda k, v: _count(k, v, MAX_MEMORY_BYTES),
            "slow_query_seconds": _seconds,
            "slow_query_ratio": _ratio,
            "stop": _flag,
        }
        unknown = sorted(set(body) - set(parsers))
        if unknown:
            raise FaultError(f"{unknown[0]}: unknown fault (known: {', '.join(parsers)})")
        return {key: parsers[key](key, value) for key, value in body.items()}

    def replace(self, faults: dict[str, Any]) -> dict[str, Any]:
        """Make ``faults`` (from ``parse``) the active set; the new state."""
        with self._lock:
            self._release()
            self.active = dict(faults)
            self.error_ratio = faults.get("error_ratio", 0.0)
            self.latency_seconds = faults.get("latency_seconds", 0.0)
            self.latency_ratio = faults.get("latency_ratio", 1.0)
            self.cache_bypass = faults.get("cache_bypass", False)
            self.fail_logins = faults.get("fail_logins", False)
            self.slow_query_seconds = faults.get("slow_query_seconds", 0.0)
            self.slow_query_ratio = faults.get("slow_query_ratio", 1.0)
            if faults.get("memory_bytes"):
                self._memory = _touched(faults["memory_bytes"])
            if faults.get("hold_connections"):
                self._hold(faults["hold_connections"])
        if faults.get("stop") and self._on_stop:
            self._on_stop()
        return self.state()

    def state(self) -> dict[str, Any]:
        return {
            "faults": dict(self.active),
            "held_connections": len(self._held),
            "allocated_bytes": len(self._memory) if self._memory is not None else 0,
        }

    def _hold(self, count: int) -> None:
        if self._pool is None:
            return
        for _ in range(count):
            try:
                self._held.append(self._pool.getconn(timeout=self._pool_timeout))
            except Exception:
                break

    def _release(self) -> None:
        held, self._held = self._held, []
        for conn in held:
            try:
                self._pool.putconn(conn)
            except Exception:
                pass
        self._memory = None


def _touched(size: int) -> bytearray:
    """``size`` bytes with every page written, so they are resident (not just reserved)."""
    buf = bytearray(size)
    buf[::PAGE] = b"\x01" * len(range(0, size, PAGE))
    return buf
