"""Admission to one worker's scoring thread (:class:`ScoringQueue`): validation and scoring run
there, never on the event loop, so probes answer while a request is scored; in front of it a
bounded queue with a deadline, so overload is refused at once instead of queued without end."""

from __future__ import annotations

import asyncio
import functools
import statistics
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, TypeVar

T = TypeVar("T")
QUEUE_FULL = "the scoring queue is full (JOURNEY_QUEUE_LENGTH): not scored"
QUEUE_SLOW = "the scoring queue would not reach this request within JOURNEY_QUEUE_WAIT_MS: not scored"
QUEUE_LATE = "waited longer than JOURNEY_QUEUE_WAIT_MS for scoring: not scored"
RECENT_TURNS = 31  # turns whose median estimates the next ones


class ScoringQueue:
    """Admission to one worker's scoring thread: one request at a time holds it (validation and
    scoring, see :meth:`run`), at most ``length`` more wait, each at most ``wait_ms``. A request is
    refused at once when the queue is full, or when the requests ahead of it would already take
    longer than ``wait_ms`` at the typical time per turn (the median of the last
    :data:`RECENT_TURNS`, so one slow request or one stall does not refuse the cheap ones after it;
    most refusals are immediate); the deadline catches the rest (a turn far longer than the recent ones).

    Built once per process (the entry module builds it in the parent too, where it stays unused);
    the lock binds to the worker's event loop and the thread starts on first use."""

    def __init__(self, length: int, wait_ms: int) -> None:
        self.capacity = length + 1  # the request being scored + those waiting
        self.wait_s = wait_ms / 1000
        self.admitted = 0
        self.turn_s = 0.0  # median of how long the recent requests held the scoring thread
        self._recent: deque[float] = deque(maxlen=RECENT_TURNS)
        self._since = 0.0
        self._turn = asyncio.Lock()
        self._executor: ThreadPoolExecutor | None = None

    async def wait_turn(self) -> str | None:
        """None once this request holds the scoring thread (then :meth:`leave` when done); otherwise
        why not: at once when the queue is full or too slow, after ``wait_ms`` when the turn did not come."""
        if self.admitted >= self.capacity:
            return QUEUE_FULL
        if self.admitted * self.turn_s > self.wait_s:
            return QUEUE_SLOW
        self.admitted += 1
        try:
            await asyncio.wait_for(self._turn.acquire(), self.wait_s)
        except asyncio.TimeoutError:
            self.admitted -= 1
            return QUEUE_LATE
        except BaseException:  # cancelled (server shutdown)
            self.admitted -= 1
            raise
        self._since = time.perf_counter()
        return None

    def leave(self) -> None:
        self._recent.append(time.perf_counter() - self._since)
        self.turn_s = statistics.median(self._recent)
        self._turn.release()
        self.admitted -= 1

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)`` on the scoring thread, the event loop staying free for other requests."""
        return await self.submit(fn, *args)

    def submit(self, fn: Callable[..., T], *args: Any) -> asyncio.Future:
        """``fn(*args)`` started on the scoring thread: its future (not cancellable once it runs)."""
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="journey-scoring")
        return asyncio.get_running_loop().run_in_executor(self._executor, functools.partial(fn, *args))
