"""engine.runtime.workers x intra_op_threads: what 0 (auto) resolves to (fast)."""

from __future__ import annotations

import pytest

from fastkokoro_wyoming.engine.model.runtime import cpu_split


@pytest.mark.parametrize(
    ("workers", "threads", "cpus", "want"),
    [
        (0, 0, 1, (1, 1)),
        (0, 0, 2, (2, 1)),  # measured: bench/results/capacity.md
        (0, 0, 8, (4, 2)),  # at most MAX_AUTO_WORKERS workers, the cores shared out
        (1, 0, 2, (1, 2)),  # one of the two given: the other divides the cores
        (0, 2, 2, (1, 2)),
        (0, 1, 4, (4, 1)),
        (3, 5, 2, (3, 5)),  # both given: as given, even oversubscribed
    ],
)
def test_cpu_split(workers, threads, cpus, want):
    assert cpu_split(workers, threads, gpu=False, cpus=cpus) == want


def test_gpu_split_launches_kernels_from_one_thread_per_worker():
    assert cpu_split(0, 0, gpu=True, cpus=16) == (2, 1)
    assert cpu_split(3, 0, gpu=True) == (3, 1)
