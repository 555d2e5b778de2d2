"""A worker process builds its shared clients once, however many threads ask for them at the same moment."""

from __future__ import annotations

import threading
import time

from shared.once import once_per_process


def test_many_threads_at_once_get_one_instance() -> None:
    calls: list[int] = []

    @once_per_process
    def expensive() -> object:
        calls.append(1)
        time.sleep(0.05)  # long enough for every thread to arrive while the first is still building
        return object()

    start = threading.Barrier(32)
    results: list[object] = []

    def ask() -> None:
        start.wait()
        results.append(expensive())

    threads = [threading.Thread(target=ask) for _ in range(32)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(calls) == 1
    assert len(results) == 32 and all(result is results[0] for result in results)
