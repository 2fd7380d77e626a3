"""A clock a test moves by hand, for code that takes a ``clock`` callable (seconds)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class ManualClock:
    """Call it for the time; move it with ``clock.now += seconds``."""

    now: float = 1000.0

    def __call__(self) -> float:
        return self.now
