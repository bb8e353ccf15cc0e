"""The one seat rule: what a showing can still sell.

A seat is taken when a Paid ticket has it, or a Pending ticket holds it and its hold has not
expired (`TicketRepository.held_seats`). Every check runs under the showing's row lock.
"""

from __future__ import annotations


def seats_taken(seats_paid: int, seats_held: int) -> int:
    return seats_paid + seats_held


def seats_left(max_tickets: int, seats_paid: int, seats_held: int) -> int:
    """Seats a new order may still take (never below zero)."""
    return max(max_tickets - seats_taken(seats_paid, seats_held), 0)
