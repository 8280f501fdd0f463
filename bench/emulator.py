"""Emulator throughput: PaymentIntent creations per second with 100,000 objects already stored.

Starts `python -m emulator`, measures `POST /v1/payment_intents` with wrk on an empty store
(the anchor), fills the store with 100,000 payment intents over HTTP, and measures again. The
ratio shows whether per-request work grows with the store. Run with `make bench-emulator`.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request

from bench.wrk import Run, run_wrk
from tests.fixtures.emulator import free_port

API_KEY = "sk_test_bench"
BODY = "amount=2000&currency=usd&automatic_payment_methods[enabled]=true&metadata[order_id]=42"


def wrk(url: str, *, connections: int, seconds: int) -> Run:
    return run_wrk(
        f"{url}/v1/payment_intents",
        os.path.join(os.path.dirname(__file__), "post.lua"),
        connections=connections,
        seconds=seconds,
        env={
            **os.environ,
            "BODY": BODY,
            "API_KEY": API_KEY,
            "CONTENT_TYPE": "application/x-www-form-urlencoded",
        },
    )


def stored(url: str) -> int:
    with urllib.request.urlopen(f"{url}/_emulator/health") as response:
        objects = json.load(response)["objects"]
    return int(objects.get("payment_intent", 0))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--objects", type=int, default=100_000)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=32)
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed: apt-get install wrk")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    emulator = subprocess.Popen(
        [sys.executable, "-m", "emulator", "--port", str(port), "--empty"],
        stdout=subprocess.DEVNULL,
    )
    try:
        for _ in range(100):
            try:
                stored(url)
                break
            except OSError:
                time.sleep(0.1)
        wrk(url, connections=args.connections, seconds=2)  # warm-up
        empty = wrk(url, connections=args.connections, seconds=args.seconds)
        missing = args.objects - stored(url)
        while missing > 0:
            wrk(url, connections=args.connections, seconds=max(1, int(missing / empty.rps) + 1))
            missing = args.objects - stored(url)
        full = wrk(url, connections=args.connections, seconds=args.seconds)
        print(
            f"machine: {os.cpu_count()} cores; wrk -t1 -c{args.connections} "
            f"-d{args.seconds}s POST /v1/payment_intents"
        )
        for name, run in (("from empty", empty), (f"{stored(url):,} stored", full)):
            print(
                f"  {name:>18}: {run.rps:8.0f} req/s  p50 {run.p50_ms:6.2f} ms  "
                f"p99 {run.p99_ms:6.2f} ms  errors {run.errors}"
            )
        print(f"  ratio full/empty: {full.rps / empty.rps:.2f} (1.00 = no slowdown as it fills)")
    finally:
        emulator.terminate()
        emulator.wait()


if __name__ == "__main__":
    main()
