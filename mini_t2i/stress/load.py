"""Load test of the demo server: concurrent gradio_client users, for a bounded time.

    python -m mini_t2i.stress.load --serve --clients 8 --requests 25          # its own server, loopback
    python -m mini_t2i.stress.load --url http://127.0.0.1:7860/ --clients 8 --requests 25

Each of `clients` users submits `requests` generate calls one after another (one image,
one candidate: the load is the number of calls). While a call waits, its queue position is
polled: the server must report it. One more user submits the largest request the limits
allow and stops it when its first preview arrives: the slot must come free (the others
still finish). Reported: calls served and failed, the largest queue position seen, wall
time, and the server's resident memory before and at the end (for a server in this
process, or one given by --pid).
"""

from __future__ import annotations

import argparse
import json
import os
import threading
import time
from pathlib import Path


def resident_mb(pid: int) -> dict[str, float]:
    """Current (VmRSS) and peak (VmHWM) resident memory of a Linux process, in MB."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = int(value.split()[0]) / 1024
    return {"rss": fields.get("VmRSS", 0.0), "peak": fields.get("VmHWM", 0.0)}


def run_load(url: str, clients: int = 8, requests: int = 3, model: str = "shapes64", stop_one: bool = True,
             pid: int | None = None, timeout: float = 600.0) -> dict:
    from gradio_client import Client

    lock = threading.Lock()
    report = {"clients": clients, "requests_per_client": requests, "served": 0, "failed": 0, "errors": [],
              "max_queue_rank": 0, "stopped": 0}
    memory_before = resident_mb(pid) if pid else None

    def wait(job):
        while not job.done():
            rank = getattr(job.status(), "rank", None)
            if rank is not None:
                with lock:
                    report["max_queue_rank"] = max(report["max_queue_rank"], int(rank))
            time.sleep(0.05)

    def user(index: int) -> None:
        client = Client(url, verbose=False)
        for r in range(requests):
            job = client.submit(f"{1 + (index + r) % 4} green stars", model, 1, 1, 1.0, 1.0, 32, 1.0,
                                index * 1000 + r, api_name="/generate")
            try:
                wait(job)
                gallery = job.result(timeout=timeout)[0]
                ok = len(gallery) == 1
            except Exception as exc:  # noqa: BLE001 - every failure is counted and shown
                ok = False
                with lock:
                    report["errors"].append(f"{type(exc).__name__}: {exc}"[:200])
            with lock:
                report["served" if ok else "failed"] += 1

    def stopper() -> None:
        client = Client(url, verbose=False)
        job = client.submit("a red circle above a blue square", model, 16, 64, 3.0, 1.0, 64, 1.0, 0,
                            api_name="/generate")
        deadline = time.time() + timeout
        while not job.outputs() and not job.done() and time.time() < deadline:
            time.sleep(0.05)
        job.cancel()
        with lock:
            report["stopped"] += 1

    t0 = time.perf_counter()
    threads = [threading.Thread(target=user, args=(i,)) for i in range(clients)]
    if stop_one:
        threads.insert(0, threading.Thread(target=stopper))
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout)
    report["seconds"] = time.perf_counter() - t0
    report["calls_per_s"] = report["served"] / report["seconds"]
    if pid:
        report["memory_mb"] = {"before": memory_before, "after": resident_mb(pid)}
    return report


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", help="a running demo; omitted with --serve")
    parser.add_argument("--serve", action="store_true", help="start the demo in this process on a free port")
    parser.add_argument("--pid", type=int, help="the server's process id, for its memory")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--requests", type=int, default=10, help="calls per client")
    parser.add_argument("--model", default="shapes64")
    parser.add_argument("--out", default="runs/stress/load.json")
    args = parser.parse_args(argv)
    url, pid, demo = args.url, args.pid, None
    if args.serve:
        from mini_t2i.demo.ui import build_demo, free_port, launch

        demo = build_demo(models=[args.model])
        port = free_port()
        launch(demo, "127.0.0.1", port, block=False)
        url, pid = f"http://127.0.0.1:{port}/", os.getpid()
    if not url:
        parser.error("give --url of a running demo, or --serve")
    report = run_load(url, args.clients, args.requests, args.model, pid=pid)
    if demo is not None:
        report["peak_running"] = demo.pool.peak_running
        report["stopped_early"] = demo.pool.stopped_early
        demo.close()
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
