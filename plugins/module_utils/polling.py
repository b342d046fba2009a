"""One polling loop for the project's modules: call a check until it holds or the time is up.

The clock and the sleep are looked up in this module at every call, so the unit
tests can run a module on a fake clock by replacing ``_monotonic`` and ``_sleep``.
"""

from __future__ import annotations

import time

_monotonic = time.monotonic
_sleep = time.sleep


def now():
    """The monotonic clock, in seconds."""
    return _monotonic()


def sleep(seconds):
    _sleep(seconds)


def since(start):
    """Seconds since ``start`` (a value of now()), rounded to milliseconds."""
    return round(_monotonic() - start, 3)


class Poll:
    """Call a check every ``interval`` seconds until it holds or ``timeout`` seconds passed.

    The check may move ``deadline`` (an absolute now() value), for example to keep
    watching for a grace period once what it waited for happened.
    """

    def __init__(self, timeout, interval):
        self.started = now()
        self.deadline = self.started + timeout
        self.interval = interval

    def elapsed(self):
        """Seconds since the poll started, rounded to milliseconds."""
        return since(self.started)

    def until(self, check):
        """Run ``check()`` at once and after every interval: True as soon as it returns true,
        False when the deadline passed without that."""
        while True:
            if check():
                return True
            if now() >= self.deadline:
                return False
            sleep(self.interval)


def poll_until(check, timeout, interval):
    """Poll(timeout, interval).until(check)."""
    return Poll(timeout, interval).until(check)
