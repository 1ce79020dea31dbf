"""Run some threads at once, switching between them as often as Python allows: how the tests
of moto's races (postback_ops.local.moto_patches) make a lost race likely."""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable


def all_at_once(work: Callable[[int], None], threads: int) -> None:
    """`work(n)` in `threads` threads at once, n = 0..threads-1; returns when all have ended."""
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        running = [threading.Thread(target=work, args=(n,)) for n in range(threads)]
        for thread in running:
            thread.start()
        for thread in running:
            thread.join()
    finally:
        sys.setswitchinterval(interval)
