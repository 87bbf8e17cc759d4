"""The demo under 8 concurrent gradio_client users (the quick form of mini_t2i.stress.load)."""

import os
import time

import pytest

pytest.importorskip("gradio", reason="the demo extra is not installed: pip install -e '.[demo]'")


def test_eight_clients_are_all_served_in_turn_with_bounded_memory():
    from mini_t2i.demo.ui import build_demo, free_port, launch
    from mini_t2i.stress.load import run_load

    demo = build_demo(models=["shapes64"])
    port = free_port()
    launch(demo, "127.0.0.1", port, block=False)
    try:
        # timeout: a hang guard per call (queue wait included); the whole run takes ~31 s here
        report = run_load(f"http://127.0.0.1:{port}/", clients=8, requests=2, pid=os.getpid(), timeout=600)
        # The stopped generator is closed by the server after the cancel, at its next preview; on a
        # loaded machine that can come after the other calls are served (once seen in CI), so wait
        # for it, bounded, before reading the count.
        deadline = time.time() + 60
        while demo.pool.stopped_early < 1 and demo.pool.running and time.time() < deadline:
            time.sleep(0.1)
        time.sleep(0.5)  # the count follows the slot's release (handlers.generate's finally)
    finally:
        demo.close()
    assert report["failed"] == 0 and report["served"] == 16, report["errors"]
    assert report["max_queue_rank"] >= 1  # callers were told their place in the queue
    # The stopped call freed its slot: closed at the cancel, or, where gradio 6.31 loses a client's cancel
    # (6 of 18 in docs/scripts/cancel_probe.py: the generation then runs to its end), when it finished;
    # either way nothing is left running and every other call was served.
    assert report["stopped"] == 1 and demo.pool.running == 0 and demo.pool.stopped_early <= 1
    # Concurrency 1: one generation at a time, the rest queued. The stop frees the slot at once,
    # while the stopped generator ends at its next preview (one token row later): at most 2 overlap.
    assert demo.pool.peak_running <= 2
    grown = report["memory_mb"]["after"]["rss"] - report["memory_mb"]["before"]["rss"]
    # MB: bounded (the 64-candidate call and 16 small ones); measured 234 MB (peak +442); a leak per call grows on
    assert grown < 1000, report["memory_mb"]
