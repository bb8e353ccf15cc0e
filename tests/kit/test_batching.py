"""The group-commit batcher: batches form while one is served, per key, and nobody is lost."""

from __future__ import annotations

import asyncio

import pytest

from movietickets.kit.batching import Batcher


class Recorder:
    """Serves batches slowly enough for the next ones to form, and remembers them."""

    def __init__(self) -> None:
        self.batches: list[tuple[str, list[int]]] = []
        self.release = asyncio.Event()
        self.release.set()

    async def serve(self, key: str, items: list[int]) -> list[int | Exception]:
        self.batches.append((key, items))
        await self.release.wait()
        await asyncio.sleep(0.01)
        return [ValueError(item) if item < 0 else item * 10 for item in items]


async def test_callers_arriving_during_a_batch_form_the_next_one() -> None:
    recorder = Recorder()
    batcher: Batcher[str, int, int] = Batcher(recorder.serve, max_batch=100)
    first = asyncio.create_task(batcher.submit("a", 1))
    await asyncio.sleep(0)  # the leader takes item 1 alone
    rest = [asyncio.create_task(batcher.submit("a", n)) for n in range(2, 12)]
    assert await first == 10
    assert await asyncio.gather(*rest) == [n * 10 for n in range(2, 12)]
    assert recorder.batches == [("a", [1]), ("a", list(range(2, 12)))]
    await batcher.aclose()


async def test_keys_are_served_independently_and_batches_are_capped() -> None:
    recorder = Recorder()
    batcher: Batcher[str, int, int] = Batcher(recorder.serve, max_batch=3)
    results = await asyncio.gather(
        *(batcher.submit(key, n) for n in range(7) for key in ("a", "b"))
    )
    assert sorted(results) == sorted(n * 10 for n in range(7) for _ in "ab")
    for key in "ab":
        sizes = [len(items) for k, items in recorder.batches if k == key]
        assert sizes == [3, 3, 1]


async def test_an_error_outcome_goes_to_its_caller_only() -> None:
    batcher: Batcher[str, int, int] = Batcher(Recorder().serve, max_batch=10)
    outcomes = await asyncio.gather(
        batcher.submit("a", 1), batcher.submit("a", -1), return_exceptions=True
    )
    assert outcomes[0] == 10
    assert isinstance(outcomes[1], ValueError)


async def test_a_failed_batch_fails_its_callers_and_the_next_batch_still_runs() -> None:
    calls = 0

    async def serve(_key: str, items: list[int]) -> list[int | Exception]:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise ConnectionError("database gone")
        return list(items)

    batcher: Batcher[str, int, int] = Batcher(serve, max_batch=10)
    failed = await asyncio.gather(
        *(batcher.submit("a", n) for n in range(3)), return_exceptions=True
    )
    assert all(isinstance(outcome, ConnectionError) for outcome in failed)
    assert await batcher.submit("a", 7) == 7


async def test_a_caller_that_goes_away_is_not_served() -> None:
    recorder = Recorder()
    recorder.release.clear()
    batcher: Batcher[str, int, int] = Batcher(recorder.serve, max_batch=10)
    blocking = asyncio.create_task(batcher.submit("a", 1))
    await asyncio.sleep(0)
    gone = asyncio.create_task(batcher.submit("a", 2))
    staying = asyncio.create_task(batcher.submit("a", 3))
    await asyncio.sleep(0)
    gone.cancel()
    recorder.release.set()
    assert await blocking == 10
    assert await staying == 30
    with pytest.raises(asyncio.CancelledError):
        await gone
    assert recorder.batches == [("a", [1]), ("a", [3])]


async def test_closing_cancels_the_callers_still_waiting() -> None:
    recorder = Recorder()
    recorder.release.clear()
    batcher: Batcher[str, int, int] = Batcher(recorder.serve, max_batch=10)
    waiting = [asyncio.create_task(batcher.submit("a", n)) for n in range(3)]
    await asyncio.sleep(0)
    await batcher.aclose()
    for task in waiting:
        with pytest.raises(asyncio.CancelledError):
            await task
    # A closed key starts afresh.
    recorder.release.set()
    assert await batcher.submit("a", 5) == 50
