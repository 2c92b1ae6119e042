import asyncio
import threading

import pytest

from fastkokoro_wyoming.engine.errors import Busy
from fastkokoro_wyoming.engine.serving.scheduler import Scheduler


async def test_first_segments_go_first_and_cancelled_jobs_never_run():
    s = Scheduler(workers=1, max_queue=10)
    gate = threading.Event()
    order: list[str] = []
    blocker = s.submit(gate.wait, (0, 0, 0))
    await asyncio.sleep(0.05)  # the worker is now busy
    later = [s.submit(lambda i=i: order.append(f"long{i}"), (1, i, 0)) for i in (1, 2, 3)]
    dropped = s.submit(lambda: order.append("cancelled"), (1, 4, 0))
    first = s.submit(lambda: order.append("short0"), (0, 0, 1))
    dropped.cancel()
    gate.set()
    await asyncio.gather(*(j.result for j in (blocker, first, *later)))
    assert order == ["short0", "long1", "long2", "long3"]
    s.close()


async def test_full_queue_is_busy():
    s = Scheduler(workers=1, max_queue=2)
    gate = threading.Event()
    running = s.submit(gate.wait, (0,))
    await asyncio.sleep(0.05)
    a, b = s.submit(lambda: 1, (1,)), s.submit(lambda: 2, (1,))
    with pytest.raises(Busy):
        s.submit(lambda: 3, (1,))
    gate.set()
    assert await asyncio.gather(a.result, b.result) == [1, 2]
    await running
    s.close()


async def test_errors_reach_the_caller_and_worker_survives():
    s = Scheduler(workers=1)
    with pytest.raises(ZeroDivisionError):
        await s.submit(lambda: 1 / 0, (0,))
    assert await s.submit(lambda: 42, (0,)) == 42
    s.close()
