"""A fake clock for the parts that take an injectable `clock` (and `sleep`): the test sets `now`,
and `sleep` moves it on, recorded in `slept`, so waits cost no real time."""

from __future__ import annotations


class Clock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds
