"""Reservations that can be given back, on storages that only count up.

``limits`` storages offer ``incr`` (atomic add, returns the new value) and ``get``
but no decrement, and a refund is exactly what token budgets (reserve
``prompt estimate + max_tokens``, settle against the reported usage) and
concurrency caps (take a slot, give it back when the response ends) need. So
each limit is kept as two counters that only ever grow:

* ``used``  - everything ever taken (reservations, extra usage);
* ``freed`` - everything ever given back (refunds, released slots, refused
  reservations).

The level is ``used - freed``. A reservation of ``n`` against limit ``L``:

1. ``f = get(freed)``
2. ``u = incr(used, n)``  (atomic: concurrent reservations get distinct ``u``)
3. admitted iff ``u - f <= L``; otherwise ``incr(freed, n)`` gives it back.

Why the read comes first: every amount in ``f`` was freed by a request whose own
``incr(used)`` happened *before* our read, hence before our increment, so it is
also counted in ``u``. Therefore ``u - f`` is never below the true level (the
sum of admitted, unsettled reservations plus settled usage) plus ``n``, and an
admitted reservation always fits: the sum of admitted reservations never
exceeds ``L``, also when the very first requests of a user arrive at the same
moment (each gets its own ``u``; exactly the first ``L // n`` fit). Had we read
``freed`` after the increment, a request could count a refund made by a later
request that was refused *because of* our own reservation, and two requests
could both be admitted into the last slot.

Refusals and stale reads only ever make the level look higher, so the error is
on the safe side: a refused reservation that has not yet been given back can
refuse another request for a moment, never admit one too many.

Counters live in time-aligned windows (the window index is part of the key)
and expire with them, so a process that dies without settling cannot hold
capacity beyond its window. Cost: two round trips per reservation (the read
must finish before the increment), one more when it is refused, one to settle.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Sequence
from typing import NamedTuple, TypeVar

from limits.aio.storage import Storage

from airlock.throttle.memory import MemoryStorage

__all__ = [
    "Reservation",
    "Slot",
    "all_of",
    "give_back",
    "give_back_local",
    "reserve",
    "reserve_local",
    "take_more",
    "take_more_local",
]

T = TypeVar("T")


class Slot(NamedTuple):
    """One limit's two counters; ``carried`` pairs (used, freed) add a read-only earlier level."""

    used: str
    freed: str
    limit: int
    expiry: int
    carried: tuple[tuple[str, str], ...] = ()


class Reservation(NamedTuple):
    admitted: bool
    levels: tuple[int, ...]  # level of each slot right after this reservation


async def all_of(calls: Sequence[Awaitable[T]], concurrent: bool) -> list[T]:
    """Await ``calls``: together over a network (one round trip), one by one in memory.

    In-process storages never wait, so running them as tasks would only add the
    cost of scheduling them.
    """
    if concurrent and len(calls) > 1:
        return list(await asyncio.gather(*calls))
    return [await call for call in calls]


async def reserve(
    storage: Storage, slots: Sequence[Slot], amount: int, *, concurrent: bool = True
) -> Reservation:
    """Reserve ``amount`` in every slot, all or nothing (see the module docstring)."""
    reads: list[Awaitable[int]] = []
    for slot in slots:
        reads.append(storage.get(slot.freed))
        for used, freed in slot.carried:
            reads.append(storage.get(used))
            reads.append(storage.get(freed))
    values = iter(await all_of(reads, concurrent))
    freed_before: list[int] = []
    carried_levels: list[int] = []
    for slot in slots:
        freed_before.append(int(next(values)))
        carried = 0
        for _ in slot.carried:
            carried += max(0, int(next(values)) - int(next(values)))
        carried_levels.append(carried)
    used_after = await all_of([storage.incr(s.used, s.expiry, amount) for s in slots], concurrent)
    levels = tuple(int(u) - f + c for u, f, c in zip(used_after, freed_before, carried_levels, strict=True))
    admitted = all(level <= slot.limit for level, slot in zip(levels, slots, strict=True))
    if not admitted:
        await give_back(storage, slots, amount, concurrent=concurrent)
    return Reservation(admitted, levels)


async def give_back(storage: Storage, slots: Sequence[Slot], amount: int, *, concurrent: bool = True) -> None:
    """Return ``amount`` to every slot (a refund, a released slot, a refused reservation)."""
    if amount > 0:
        await all_of([storage.incr(s.freed, s.expiry, amount) for s in slots], concurrent)


async def take_more(storage: Storage, slots: Sequence[Slot], amount: int, *, concurrent: bool = True) -> None:
    """Charge ``amount`` unconditionally (usage beyond the reservation)."""
    if amount > 0:
        await all_of([storage.incr(s.used, s.expiry, amount) for s in slots], concurrent)


# The in-process storage (memory://): the same steps, called synchronously. Nothing is
# awaited between the reads and the increments, so no other request can run in between
# and each function is one atomic step on the event loop.


def reserve_local(storage: MemoryStorage, slots: Sequence[Slot], amount: int) -> Reservation:
    """:func:`reserve` on the in-process storage."""
    count, add = storage.count, storage.add
    freed_before = [count(s.freed) for s in slots]
    carried_levels = [sum(max(0, count(used) - count(freed)) for used, freed in s.carried) for s in slots]
    used_after = [add(s.used, s.expiry, amount) for s in slots]
    levels = tuple(u - f + c for u, f, c in zip(used_after, freed_before, carried_levels, strict=True))
    admitted = all(level <= slot.limit for level, slot in zip(levels, slots, strict=True))
    if not admitted:
        give_back_local(storage, slots, amount)
    return Reservation(admitted, levels)


def give_back_local(storage: MemoryStorage, slots: Sequence[Slot], amount: int) -> None:
    """:func:`give_back` on the in-process storage."""
    if amount > 0:
        for slot in slots:
            storage.add(slot.freed, slot.expiry, amount)


def take_more_local(storage: MemoryStorage, slots: Sequence[Slot], amount: int) -> None:
    """:func:`take_more` on the in-process storage."""
    if amount > 0:
        for slot in slots:
            storage.add(slot.used, slot.expiry, amount)
