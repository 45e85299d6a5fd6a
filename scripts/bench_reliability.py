#!/usr/bin/env python3
"""What hostile peers cost a mining node: a getheaders flood and peers that never read.

    .venv/bin/python scripts/bench_reliability.py [--build-s 60] [--phase-s 15] [--rate 290]

One `pouw node` process on 127.0.0.1 (render network tests/p2p/fast.toml with one unit a block,
no retarget, so the header chain grows fast, and units of 4 images of 32 x 32 so that a unit, not
the per-block overhead, is most of the miner's time) mines for --build-s seconds; then three
phases of --phase-s seconds each, with the work units mined per second (the miner's useful work),
the API's p95 latency (GET /api/status, 5 a second) and the node's RSS:
1. quiet: no peers;
2. flood: one peer sends getheaders from genesis at --rate a second (under the 500 messages/s
   rate limit) and reads every reply (up to 2,000 headers each);
3. non-reading: 12 peers each send 200 getheaders and never read a byte.
The share of mining kept is the phase's units/s over the quiet phase's.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import aiohttp

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests" / "p2p"))

from framework import NodeProcess, TestPeer, hello_for, write_network  # noqa: E402
from test_p2p_resources import RawPeer, _rss_mb  # noqa: E402

from p2p.protocol import AGENT, GetHeaders  # noqa: E402


def measure(node: NodeProcess, seconds: float, during=None) -> dict:
    lat: list[float] = []
    stop = threading.Event()
    thread = None
    if during is not None:
        thread = threading.Thread(target=during, args=(stop,), daemon=True)
        thread.start()
    st0 = node.status()
    t0 = time.monotonic()
    rss = 0.0
    while time.monotonic() - t0 < seconds:
        started = time.perf_counter()
        node.status()
        lat.append((time.perf_counter() - started) * 1000)
        rss = max(rss, _rss_mb(node.proc.pid))
        time.sleep(0.2)
    st1 = node.status()
    elapsed = time.monotonic() - t0
    stop.set()
    if thread is not None:
        thread.join(30)
    return {
        "units_per_s": (st1["units_mined"] - st0["units_mined"]) / elapsed,
        "api_p95_ms": statistics.quantiles(lat, n=20)[18] if len(lat) >= 20 else max(lat),
        "rss_mb": rss,
        "height": st1["height"],
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build-s", type=float, default=60)
    ap.add_argument("--phase-s", type=float, default=15)
    ap.add_argument("--rate", type=float, default=290)
    ap.add_argument("--images", type=int, default=4, help="images per unit (default 4)")
    ap.add_argument("--image-size", type=int, default=32, help="image side in pixels (default 32)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        network = write_network(
            tmp / "quick.toml",
            retarget_half_life_ms=10**10,
            initial_units_per_block=1,
            block_interval_ms=50,
        )
        # Units of a realistic size against the block overhead: 4 images of 32 x 32 each.
        network.write_text(
            network.read_text()
            .replace("images_per_unit = 1", f"images_per_unit = {args.images}")
            .replace("image_size = 16", f"image_size = {args.image_size}")
        )
        node = NodeProcess(tmp / "a", network=network, name="a").start(mine=True).wait_ready()
        try:
            time.sleep(args.build_s)
            status = node.status()
            genesis = bytes.fromhex(status["genesis"])
            print(
                f"chain built: height {status['height']} (getheaders replies carry up to 2,000 "
                "headers)"
            )
            quiet = measure(node, args.phase_s)
            answered = {"n": 0}

            def flood(stop: threading.Event) -> None:
                async def run() -> None:
                    p = await TestPeer().connect(node.p2p_addr)
                    await p.handshake(status)
                    while not stop.is_set():
                        await p.send(GetHeaders((genesis,)))
                        try:  # raw frames, not decoded: the client's own CPU stays small
                            while True:
                                frame = await p.ws.receive(timeout=0.0005)
                                if frame.type != aiohttp.WSMsgType.BINARY:
                                    return
                                answered["n"] += 1
                        except TimeoutError:
                            pass
                        await asyncio.sleep(1 / args.rate)
                    await p.close()

                asyncio.run(run())

            flooded = measure(node, args.phase_s, flood)
            flooded["note"] = f"{answered['n'] / args.phase_s:.0f} replies/s"

            def non_reading(stop: threading.Event) -> None:
                peers = [RawPeer(node.p2p_addr) for _ in range(12)]
                for p in peers:
                    p.send(hello_for(status, listen="", nonce=os.urandom(8), agent=AGENT + "-raw"))
                for _ in range(20):
                    for p in peers:
                        for _ in range(10):
                            try:
                                p.send(GetHeaders((genesis,)))
                            except OSError:
                                pass
                    time.sleep(0.05)
                stop.wait()

            stuck = measure(node, args.phase_s, non_reading)
            stuck["note"] = f"peers left: {node.status()['peers']}"
        finally:
            node.stop()
    print(f"\n{'phase':<14}{'units/s':>9}{'share':>8}{'API p95 ms':>12}{'RSS MB':>8}  note")
    for name, r in (("quiet", quiet), ("flood", flooded), ("non-reading", stuck)):
        share = r["units_per_s"] / quiet["units_per_s"] if quiet["units_per_s"] else float("nan")
        print(
            f"{name:<14}{r['units_per_s']:>9.1f}{share:>8.0%}"
            f"{r['api_p95_ms']:>12.1f}{r['rss_mb']:>8.0f}  {r.get('note', '')}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
