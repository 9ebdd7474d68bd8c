"""`cnnlab serve` under load: dynamic batching on against off, on this machine's loopback.

    .venv/bin/python bench/serve_load.py RUN [--clients 200] [--seconds 30] [--image PHOTO]
    .venv/bin/python bench/serve_load.py RUN --engines    # PyTorch against ONNX Runtime

For each case a fresh `cnnlab serve` process (batching on: --max-batch 32; off: --max-batch 1) and
an asyncio client (httpx) with `--clients` concurrent clients posting the same photo in a loop for
`--seconds`: requests/s, p50/p95/p99 latency, the status counts and the server's peak RSS. Client
and server share the machine's cores, as a single-box deployment would.
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import statistics
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import httpx
import numpy as np

FLOWERS = Path(__file__).resolve().parents[2] / "shared" / "data" / "flowers12"
CASES = {"batching off (--max-batch 1)": ["--max-batch", "1"],
         "batching on (--max-batch 32)": ["--max-batch", "32"]}
# --engines: a run folder served by PyTorch against ONNX Runtime (its graph made before the load)
ENGINE_CASES = {"PyTorch (--engine torch)": ["--max-batch", "1", "--engine", "torch"],
                "ONNX Runtime (--engine onnx)": ["--max-batch", "1", "--engine", "onnx"]}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _start(run: str, flags: list[str]) -> tuple[subprocess.Popen, str]:
    port = _free_port()
    server = subprocess.Popen([sys.executable, "-m", "cnnlab", "serve", run, "--port", str(port),
                               *flags], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    for _ in range(600):
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return server, url
        except httpx.TransportError:
            time.sleep(0.1)
    server.kill()
    raise SystemExit(f"the server did not start: {server.stderr.read().decode()}")


def _peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def _load(url: str, image: bytes, clients: int, seconds: float) -> tuple[list[float], Counter]:
    latencies: list[float] = []
    statuses: Counter = Counter()
    deadline = time.monotonic() + seconds
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(timeout=120, limits=limits) as session:
        async def client() -> None:
            while time.monotonic() < deadline:
                started = time.perf_counter()
                try:
                    response = await session.post(f"{url}/predict", content=image,
                                                  headers={"content-type": "image/jpeg"})
                    statuses[response.status_code] += 1
                except httpx.TransportError as error:
                    statuses[type(error).__name__] += 1
                latencies.append(time.perf_counter() - started)

        await asyncio.gather(*(client() for _ in range(clients)))
    return latencies, statuses


def _case(run: str, flags: list[str], image: bytes, clients: int, seconds: float) -> dict:
    server, url = _start(run, flags)
    try:
        started = time.perf_counter()
        latencies, statuses = asyncio.run(_load(url, image, clients, seconds))
        elapsed = time.perf_counter() - started
        return {"requests/s": statuses[200] / elapsed, "statuses": dict(statuses),
                "p50": statistics.median(latencies) * 1e3,
                "p95": float(np.percentile(latencies, 95)) * 1e3,
                "p99": float(np.percentile(latencies, 99)) * 1e3, "rss": _peak_rss_mb(server.pid)}
    finally:
        server.terminate()
        server.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", help="run folder or export to serve")
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--image", default=None, help="the photo posted (default: a flowers12 one)")
    parser.add_argument("--engines", action="store_true",
                        help="PyTorch against ONNX Runtime (batching off) instead of batching")
    args = parser.parse_args()
    image_path = Path(args.image) if args.image else sorted((FLOWERS / "test" / "daisy").iterdir())[0]
    image = image_path.read_bytes()
    cases = ENGINE_CASES if args.engines else CASES
    if args.engines:  # the graph is made once, before any load
        subprocess.run([sys.executable, "-m", "cnnlab", "predict", args.run, str(image_path),
                        "--engine", "onnx"], check=True, stdout=subprocess.DEVNULL)
    results = {name: _case(args.run, flags, image, args.clients, args.seconds)
               for name, flags in cases.items()}
    base = next(iter(results.values()))["requests/s"]
    print(f"{args.clients} clients, {args.seconds:g} s each, posting {image_path.name} "
          f"({len(image) / 1e3:.0f} kB) to {args.run}")
    print(f"| case | requests/s | vs {next(iter(cases))} | p50 ms | p95 ms | p99 ms | statuses "
          f"| server peak RSS |")
    print("|---|---|---|---|---|---|---|---|")
    for name, r in results.items():
        statuses = ", ".join(f"{code}: {count}" for code, count in sorted(r["statuses"].items(),
                                                                          key=str))
        print(f"| {name} | {r['requests/s']:.1f} | {r['requests/s'] / base:.2f}x | {r['p50']:.0f} | "
              f"{r['p95']:.0f} | {r['p99']:.0f} | {statuses} | {r['rss']:.0f} MB |")


if __name__ == "__main__":
    main()
