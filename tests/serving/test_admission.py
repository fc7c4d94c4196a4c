"""The worker's scoring queue (serving/admission.py): admission by the typical time per turn."""

from __future__ import annotations

import asyncio
import time

from journey_stage.serving.admission import QUEUE_FULL, QUEUE_SLOW, ScoringQueue


def held(queue: ScoringQueue, seconds: float) -> None:
    """One turn that holds the scoring thread for ``seconds`` (recorded by ``leave``)."""
    async def turn() -> None:
        assert await queue.wait_turn() is None
        queue._since = time.perf_counter() - seconds  # as if the request had held it that long
        queue.leave()

    asyncio.run(turn())


def test_one_slow_turn_does_not_refuse_the_cheap_requests_after_it():
    """After 20 turns of 4 ms, one of 240 ms (a stall, or one large request) and 2 more of 4 ms,
    a request finding 4 ahead of it is admitted: 4 x 4 ms is far within the 50 ms wait. (With the
    former moving average, 0.8 x 4 + 0.2 x 240 = 51 ms per turn, it was refused at once.)"""
    queue = ScoringQueue(length=8, wait_ms=50)
    for s in [0.004] * 20 + [0.240] + [0.004] * 2:
        held(queue, s)
    assert abs(queue.turn_s - 0.004) < 1e-3
    queue.admitted = 4  # four requests ahead (being scored or waiting)

    async def admitted() -> str | None:
        async with asyncio.timeout(1):
            return await queue.wait_turn()

    assert asyncio.run(admitted()) is None


def test_slow_typical_turns_and_a_full_queue_are_refused_at_once():
    queue = ScoringQueue(length=8, wait_ms=50)
    for _ in range(5):
        held(queue, 0.030)
    queue.admitted = 2  # 2 x 30 ms > 50 ms
    assert asyncio.run(queue.wait_turn()) == QUEUE_SLOW
    queue.admitted = 9
    assert asyncio.run(queue.wait_turn()) == QUEUE_FULL
