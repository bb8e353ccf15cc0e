"""Group commit: callers queue items under a key, one task per key serves them in batches.

Used where each caller would otherwise run a short transaction of its own and the callers
queue behind each other (on a row lock, or on the round trips of a transaction): the task
runs one transaction for everyone waiting, so its cost is shared. Callers who arrive while a
batch is being served form the next batch; a caller alone is a batch of one and waits for
nothing but its own work.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
T = TypeVar("T")
R = TypeVar("R")

# Serves one batch: an outcome per item, in order; an exception instance is raised to the
# caller of that item alone. If it raises, every caller of the batch gets the exception.
ServeBatch = Callable[[K, list[T]], Awaitable[list[R | Exception]]]


@dataclass(slots=True)
class _Waiting(Generic[T, R]):
    item: T
    outcome: asyncio.Future[R]


class Batcher(Generic[K, T, R]):
    """`submit(key, item)` queues `item` and waits for its outcome.

    The first caller for a key starts a leader task that serves the queue in batches of at
    most `max_batch` with `serve`, until the queue is empty. An outcome that is an exception
    is raised to its caller alone; if `serve` itself raises, every caller of that batch gets
    the exception. One batch per key is in flight at a time, in one process.
    """

    def __init__(self, serve: ServeBatch[K, T, R], *, max_batch: int) -> None:
        self._serve = serve
        self._max_batch = max_batch
        self._queues: dict[K, list[_Waiting[T, R]]] = {}
        self._leaders: dict[K, asyncio.Task[None]] = {}

    async def submit(self, key: K, item: T) -> R:
        waiting: _Waiting[T, R] = _Waiting(item, asyncio.get_running_loop().create_future())
        self._queues.setdefault(key, []).append(waiting)
        if key not in self._leaders:
            self._leaders[key] = asyncio.create_task(self._lead(key))
        return await waiting.outcome

    async def aclose(self) -> None:
        leaders = list(self._leaders.values())
        for leader in leaders:
            leader.cancel()
        await asyncio.gather(*leaders, return_exceptions=True)
        # A leader cancelled before it first ran never reached its own clean-up.
        for queue in self._queues.values():
            for waiting in queue:
                waiting.outcome.cancel()
        self._queues.clear()
        self._leaders.clear()

    async def _lead(self, key: K) -> None:
        queue = self._queues[key]
        batch: list[_Waiting[T, R]] = []
        try:
            while queue:
                batch = queue[: self._max_batch]
                del queue[: self._max_batch]
                # A caller that went away (its request was cancelled) is not served.
                batch = [waiting for waiting in batch if not waiting.outcome.done()]
                if batch:
                    await self._serve_batch(key, batch)
        finally:
            # No await between the loop's last look at the queue and here, so a caller
            # arriving from now on finds no leader and starts one. The queue is empty unless
            # this task was cancelled (shutdown), and then so are the callers it was serving.
            del self._leaders[key]
            del self._queues[key]
            for waiting in batch + queue:
                if not waiting.outcome.done():
                    waiting.outcome.cancel()

    async def _serve_batch(self, key: K, batch: list[_Waiting[T, R]]) -> None:
        try:
            outcomes = await self._serve(key, [waiting.item for waiting in batch])
        except Exception as exc:
            for waiting in batch:
                if not waiting.outcome.done():
                    waiting.outcome.set_exception(exc)
            return
        for waiting, outcome in zip(batch, outcomes, strict=True):
            if waiting.outcome.done():
                continue  # went away meanwhile
            if isinstance(outcome, Exception):
                waiting.outcome.set_exception(outcome)
            else:
                waiting.outcome.set_result(outcome)
