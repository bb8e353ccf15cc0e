"""Holding seats: every buyer of one showing waiting in this process, in one locked transaction.

The seat check must run under the showing's row lock, so the buyers of a hot showing queue on
that lock, and its throughput is one over the time the lock is held. That time is mostly
round trips and waiting for the event loop, not work, so it is shared (group commit): one task
per showing takes the lock, checks and inserts every queued order in arrival order (each one
sees the seats the orders before it took), commits, and hands each buyer its ticket or its
error. Buyers who arrive meanwhile form the next batch; a buyer alone is a batch of one. If
the database refuses the batch for one order (a value it cannot store), each order is tried
again in a transaction of its own, so that only that buyer gets the error.

The rules are exactly those of one buyer at a time: the availability check and the Pending
tickets are in one short transaction that locks the movie row (`locked_transaction`),
committed before anyone calls Daraja. Nothing is shared between processes but the database:
two workers each batch their own buyers and take turns at the row lock.

Against hoarding (holds last SEAT_HOLD_SECONDS, and a phone number costs nothing to make up),
one phone number and one client address may hold at most MAX_HELD_SEATS_PER_PHONE and
MAX_HELD_SEATS_PER_ADDRESS unpaid seats of a showing at once. They are counted in the same
locked transaction from the stored tickets (each keeps its client's address), plus the orders
accepted earlier in the batch, so the bound holds across every process and instance.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from movietickets.catalogue.repository import MovieRepository, SeatCheckRow
from movietickets.catalogue.seats import seats_left
from movietickets.db.engine import DATABASE_UNAVAILABLE, Sessionmaker, locked_transaction
from movietickets.db.models import PRICE_MAX
from movietickets.errors import (
    AppError,
    Conflict,
    IdempotencyKeyInUse,
    InvalidInput,
    NotFound,
    SoldOut,
    TooManySeatsHeld,
)
from movietickets.kit.batching import Batcher
from movietickets.kit.clock import utcnow
from movietickets.tickets.repository import (
    IdempotencyKeyTaken,
    NewTicket,
    SeatsHeld,
    TicketRepository,
)

# Orders checked in one transaction at most; the rest wait for the next one.
MAX_BATCH = 100


@dataclass(frozen=True, slots=True)
class Order:
    """What a buyer asks for, already validated (the phone number normalised)."""

    movie_id: int
    customer_name: str
    phone_number: str
    quantity: int
    # Who asks (`kit.net.client_key`: IPv4 address or IPv6 /64); None when unknown.
    client_address: str | None = None
    # The request's Idempotency-Key: stored on the ticket by the same INSERT (unique).
    idempotency_key: str | None = None


@dataclass(frozen=True, slots=True)
class HoldBounds:
    """Most unpaid seats of one showing one phone number, one client address may hold; 0: any."""

    per_phone: int = 0
    per_address: int = 0


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


def holding_refusal(
    order: Order, movie_id: int, held: SeatsHeld, bounds: HoldBounds
) -> TooManySeatsHeld | None:
    """Why `order` would hold more seats than its phone number or its client may; or None.

    `held` counts the showing's live holds, those accepted earlier in the batch included.
    """
    phone_holds = held.by_phone[order.phone_number]
    if bounds.per_phone and phone_holds + order.quantity > bounds.per_phone:
        return TooManySeatsHeld(
            f"This phone number already holds {phone_holds} unpaid seats for movie {movie_id}, "
            f"and may hold at most {bounds.per_phone} at once; pay for them first, or wait "
            "until they are released",
        )
    if order.client_address is None or not bounds.per_address:
        return None
    address_holds = held.by_address[order.client_address]
    if address_holds + order.quantity > bounds.per_address:
        return TooManySeatsHeld(
            f"Your network address already holds {address_holds} unpaid seats for movie "
            f"{movie_id}, and may hold at most {bounds.per_address} at once; pay for them "
            "first, or wait until they are released",
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
        client_address=order.client_address,
        idempotency_key=order.idempotency_key,
    )


class SeatHolds:
    """One per process (created in the app's lifespan)."""

    def __init__(
        self,
        sessionmaker: Sessionmaker,
        *,
        hold_seconds: int,
        bounds: HoldBounds = HoldBounds(),
        max_batch: int = MAX_BATCH,
    ) -> None:
        self._sessionmaker = sessionmaker
        self._hold = timedelta(seconds=hold_seconds)
        self._bounds = bounds
        self._batcher: Batcher[int, tuple[Order, str | None], HeldTicket] = Batcher(
            self._hold_batch, max_batch=max_batch
        )

    async def hold(self, order: Order, access_token_hash: str | None) -> HeldTicket:
        """Holds the order's seats; raises NotFound, Conflict, InvalidInput, SoldOut or
        TooManySeatsHeld.

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
        except DATABASE_UNAVAILABLE:
            raise  # the database is away: one at a time would only make everyone wait longer
        except IdempotencyKeyTaken:
            if len(orders) == 1:
                return [_key_in_use()]
        except Exception:
            if len(orders) == 1:
                raise
        # The whole transaction was rolled back. Each order again, in arrival order, with the
        # same checks under the row lock: the order that fails, fails alone.
        outcomes: list[HeldTicket | Exception] = []
        for order in orders:
            try:
                outcomes += await self._hold_together(movie_id, [order])
            except IdempotencyKeyTaken:
                outcomes.append(_key_in_use())
            except Exception as exc:
                outcomes.append(exc)
        return outcomes

    async def _hold_together(
        self, movie_id: int, orders: list[tuple[Order, str | None]]
    ) -> list[HeldTicket | Exception]:
        async with locked_transaction(self._sessionmaker) as session:
            movie = await MovieRepository(session).lock_for_seat_check(movie_id)
            now = utcnow()
            tickets = TicketRepository(session)
            available = 0
            held = SeatsHeld()
            if movie is not None and movie.show_time > now:
                held = await tickets.seats_held_by(
                    movie_id,
                    now,
                    phones={order.phone_number for order, _ in orders},
                    addresses={o.client_address for o, _ in orders if o.client_address},
                )
                available = seats_left(movie.max_tickets, movie.seats_paid, held.total)
            outcomes: list[AppError | NewTicket] = []
            for order, access_token_hash in orders:
                refused = refusal(order, movie, available, now) or holding_refusal(
                    order, movie_id, held, self._bounds
                )
                if refused is not None:
                    outcomes.append(refused)
                    continue
                assert movie is not None  # refusal() refuses every order for a missing movie
                available -= order.quantity
                _count(held, order)
                outcomes.append(new_ticket(order, movie, now, self._hold, access_token_hash))
            added = [outcome for outcome in outcomes if isinstance(outcome, NewTicket)]
            ids = iter(await tickets.add_pending(added) if added else [])
        return [
            HeldTicket(next(ids), outcome.phone_number, outcome.total_amount)
            if isinstance(outcome, NewTicket)
            else outcome
            for outcome in outcomes
        ]


def _count(held: SeatsHeld, order: Order) -> None:
    """The order's seats are held from now on (for the orders after it in the batch)."""
    held.by_phone[order.phone_number] += order.quantity
    if order.client_address is not None:
        held.by_address[order.client_address] += order.quantity


def _key_in_use() -> IdempotencyKeyInUse:
    """Another attempt with the same Idempotency-Key holds its ticket already (one that took
    the key over while this one was stalled, or two in one batch): this one must not run."""
    return IdempotencyKeyInUse(
        "A request with this Idempotency-Key is still being processed", retry_after=1
    )
