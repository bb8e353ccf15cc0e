"""Holding seats: every buyer of one showing waiting in this process, in one locked transaction.

The seat check must run under the showing's row lock, so the buyers of a hot showing queue on
that lock, and its throughput is one over the time the lock is held. That time is mostly
round trips and waiting for the event loop, not work, so it is shared (group commit): one task
per showing takes the lock, checks and inserts every queued order in arrival order (each one
sees the seats the orders before it took), commits, and hands each buyer its ticket or its
error. Buyers who arrive meanwhile form the next batch; a buyer alone is a batch of one.

The rules are exactly those of one buyer at a time: the availability check and the Pending
tickets are in one short transaction that locks the movie row (`locked_transaction`),
committed before anyone calls Daraja. Nothing is shared between processes but the database:
two workers each batch their own buyers and take turns at the row lock.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from movietickets.catalogue.repository import MovieRepository, SeatCheckRow
from movietickets.catalogue.seats import seats_left
from movietickets.db.engine import Sessionmaker, locked_transaction
from movietickets.db.models import PRICE_MAX
from movietickets.errors import (
    AppError,
    Conflict,
    IdempotencyKeyInUse,
    InvalidInput,
    NotFound,
    SoldOut,
)
from movietickets.kit.batching import Batcher
from movietickets.kit.clock import utcnow
from movietickets.tickets.repository import IdempotencyKeyTaken, NewTicket, TicketRepository

# Orders checked in one transaction at most; the rest wait for the next one.
MAX_BATCH = 100


@dataclass(frozen=True, slots=True)
class Order:
    """What a buyer asks for, already validated (the phone number normalised)."""

    movie_id: int
    customer_name: str
    phone_number: str
    quantity: int
    # The request's Idempotency-Key: stored on the ticket by the same INSERT.
    idempotency_key: str | None = None


@dataclass(frozen=True, slots=True)
class HeldTicket:
    """A committed Pending ticket holding its seats."""

    ticket_id: int
    phone_number: str
    total_amount: int


def refusal(
    order: Order, movie: SeatCheckRow | None, available: int, now: datetime
) -> AppError | None:
    """Why `order` cannot have its seats, given the seats still `available`; None if it can."""
    if movie is None:
        return NotFound(f"Movie {order.movie_id} not found")
    if movie.show_time <= now:
        return Conflict(f"Movie {movie.movie_id} has already started; tickets are closed")
    total = movie.price * order.quantity
    if total > PRICE_MAX:
        return InvalidInput(
            "body.quantity", f"the total {total} is over M-Pesa's limit of {PRICE_MAX}"
        )
    if order.quantity > available:
        return SoldOut(
            f"Only {available} seat{'' if available == 1 else 's'} left for movie {movie.movie_id}",
            seatsAvailable=available,
        )
    return None


def new_ticket(
    order: Order,
    movie: SeatCheckRow,
    now: datetime,
    hold: timedelta,
    access_token_hash: str | None,
) -> NewTicket:
    return NewTicket(
        movie_id=movie.movie_id,
        customer_name=order.customer_name,
        phone_number=order.phone_number,
        quantity=order.quantity,
        total_amount=movie.price * order.quantity,
        hold_expires_at=now + hold,
        created_at=now,
        access_token_hash=access_token_hash,
        idempotency_key=order.idempotency_key,
    )


class SeatHolds:
    """One per process (created in the app's lifespan)."""

    def __init__(
        self,
        sessionmaker: Sessionmaker,
        *,
        hold_seconds: int,
        max_batch: int = MAX_BATCH,
    ) -> None:
        self._sessionmaker = sessionmaker
        self._hold = timedelta(seconds=hold_seconds)
        self._batcher: Batcher[int, tuple[Order, str | None], HeldTicket] = Batcher(
            self._hold_batch, max_batch=max_batch
        )

    async def hold(self, order: Order, access_token_hash: str | None) -> HeldTicket:
        """Holds the order's seats; raises NotFound, Conflict, InvalidInput or SoldOut.

        A buyer who goes away while its batch is in the database keeps its Pending ticket
        until the reconciler releases it (as when a request dies between hold and push).
        """
        return await self._batcher.submit(order.movie_id, (order, access_token_hash))

    async def aclose(self) -> None:
        await self._batcher.aclose()

    async def _hold_batch(
        self, movie_id: int, orders: list[tuple[Order, str | None]]
    ) -> list[HeldTicket | Exception]:
        try:
            return await self._hold_together(movie_id, orders)
        except IdempotencyKeyTaken:
            if len(orders) == 1:
                # Another attempt with the same key holds its ticket already (the key was
                # taken over while this request was stalled): this one must not run.
                return [_key_in_use()]
        # Only the order whose key is taken may fail; the others of its batch go on.
        outcomes: list[HeldTicket | Exception] = []
        for order in orders:
            outcomes += await self._hold_batch(movie_id, [order])
        return outcomes

    async def _hold_together(
        self, movie_id: int, orders: list[tuple[Order, str | None]]
    ) -> list[HeldTicket | Exception]:
        async with locked_transaction(self._sessionmaker) as session:
            movie = await MovieRepository(session).lock_for_seat_check(movie_id)
            now = utcnow()
            tickets = TicketRepository(session)
            available = 0
            if movie is not None and movie.show_time > now:
                held = await tickets.held_seats(movie_id, now)
                available = seats_left(movie.max_tickets, movie.seats_paid, held)
            outcomes: list[AppError | NewTicket] = []
            for order, access_token_hash in orders:
                refused = refusal(order, movie, available, now)
                if refused is not None:
                    outcomes.append(refused)
                    continue
                assert movie is not None  # refusal() refuses every order for a missing movie
                available -= order.quantity
                outcomes.append(new_ticket(order, movie, now, self._hold, access_token_hash))
            added = [outcome for outcome in outcomes if isinstance(outcome, NewTicket)]
            ids = iter(await tickets.add_pending(added) if added else [])
        return [
            HeldTicket(next(ids), outcome.phone_number, outcome.total_amount)
            if isinstance(outcome, NewTicket)
            else outcome
            for outcome in outcomes
        ]


def _key_in_use() -> IdempotencyKeyInUse:
    return IdempotencyKeyInUse(
        "A request with this Idempotency-Key is still being processed", retry_after=1
    )
