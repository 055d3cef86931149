"""The FIFO gate in front of an HTTP pool: a free slot costs no wait, waiters go in arrival
order, and a waiter cancelled at any moment neither loses a slot nor keeps one."""

from __future__ import annotations

import anyio
import pytest

from amaos_llm.providers._slots import Slots

pytestmark = [pytest.mark.anyio, pytest.mark.parametrize("anyio_backend", ["asyncio", "trio"])]


async def test_waiters_are_served_in_arrival_order(anyio_backend: str) -> None:
    slots, arrived, served = Slots(1), [], []  # one slot: each grant is its own moment

    async def call(i: int) -> None:
        arrived.append(i)
        async with slots:
            served.append(i)
            await anyio.sleep(0.01)

    async with anyio.create_task_group() as tg:
        for i in range(8):
            tg.start_soon(call, i)
    assert served == arrived
    assert (slots.free, slots.waiting) == (1, 0)


async def test_at_most_size_calls_hold_a_slot(anyio_backend: str) -> None:
    slots, holding, most = Slots(3), 0, 0

    async def call() -> None:
        nonlocal holding, most
        async with slots:
            holding += 1
            most = max(most, holding)
            await anyio.sleep(0.001)
            holding -= 1

    async with anyio.create_task_group() as tg:
        for _ in range(50):
            tg.start_soon(call)
    assert most == 3
    assert slots.free == 3


async def test_a_cancelled_waiter_leaves_the_queue(anyio_backend: str) -> None:
    slots = Slots(1)
    async with slots:
        with anyio.move_on_after(0.01):
            async with slots:
                pytest.fail("no slot was free")
        assert slots.waiting == 0
    assert slots.free == 1


async def test_a_slot_handed_to_a_waiter_cancelled_meanwhile_goes_to_the_next(anyio_backend: str) -> None:
    slots, served = Slots(1), []

    async def waiter(name: str, scope_box: list[anyio.CancelScope]) -> None:
        with anyio.CancelScope() as scope:
            scope_box.append(scope)
            async with slots:
                await anyio.sleep(0)  # a cancellation not seen at the wait is seen here
                served.append(name)

    first_scope: list[anyio.CancelScope] = []
    async with anyio.create_task_group() as tg:
        await slots.__aenter__()
        tg.start_soon(waiter, "first", first_scope)
        await anyio.sleep(0.01)
        tg.start_soon(waiter, "second", [])
        await anyio.sleep(0.01)
        await slots.__aexit__(None, None, None)  # the slot goes to "first"...
        first_scope[0].cancel()  # ...which is cancelled before it runs
    assert served == ["second"]
    assert (slots.free, slots.waiting) == (1, 0)
