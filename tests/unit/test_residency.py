"""Idle unload bookkeeping (engine/model/residency.py) with fake session holders."""

from __future__ import annotations

import threading
import time

from fastkokoro_wyoming.engine.model.residency import Residency


class Part:
    def __init__(self) -> None:
        self.loaded = True
        self.reloads = 0

    def unload(self) -> None:
        self.loaded = False

    def reload(self) -> None:
        time.sleep(0.05)  # a reload takes a while: concurrent jobs must wait, not reload
        self.loaded = True
        self.reloads += 1


def test_unloads_only_when_idle_and_reloads_once_for_concurrent_jobs() -> None:
    part, busy = Part(), [True]
    r = Residency([part], 0.1, lambda: not busy[0])
    assert not r.unload_now() and part.loaded  # work in flight: never unload under it
    busy[0] = False
    assert r.unload_now() and not part.loaded and r.unloads == 1
    threads = [threading.Thread(target=r.before_job) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert part.loaded and part.reloads == 1 and r.reloads == 1 and r.reload_seconds > 0


def test_watchdog_unloads_after_the_idle_time() -> None:
    part = Part()
    r = Residency([part], 0.2, lambda: True)
    r.start()
    try:
        r.after_job()
        time.sleep(0.05)
        assert part.loaded  # not idle long enough yet
        for _ in range(100):
            if r.unloads:
                break
            time.sleep(0.05)
        assert not part.loaded and r.unloads == 1
    finally:
        r.close()


def test_zero_means_never() -> None:
    r = Residency([Part()], 0, lambda: True)
    r.start()
    assert r._watchdog is None
    r.close()
