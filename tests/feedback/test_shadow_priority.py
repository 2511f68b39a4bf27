import os
import sys
import threading

import pytest

from feedback.services.shadow import SHADOW_NICENESS, lower_this_threads_priority


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="per-thread nice values are Linux's")
def test_the_shadow_thread_alone_runs_at_a_lower_priority():
    base = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    seen: dict[str, int] = {}

    def shadow_thread() -> None:
        lower_this_threads_priority()
        seen["shadow"] = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())

    worker = threading.Thread(target=shadow_thread)
    worker.start()
    worker.join()

    assert seen["shadow"] == min(19, base + SHADOW_NICENESS)
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == base  # the request threads keep theirs
