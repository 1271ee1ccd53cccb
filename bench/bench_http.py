"""HTTP overhead of modelbus: sync calls of examples/hello through a real server, beside a
bare Starlette route calling the same ``apply`` function in process.

Both are served by uvicorn in their own process on 127.0.0.1 and loaded the same way: N
concurrent httpx clients posting ``{"name": "Ada"}`` for D seconds after a warm-up. Prints
throughput and p50/p99 latency for each, and the ratios.

    .venv/bin/python bench/bench_http.py --seconds 10 --concurrency 16

The modelbus figure includes everything a real call pays: authentication (a key lookup),
version resolution, the input schema check, the runner protocol round trip to the model's
process and the result envelope. ``examples/hello`` runs one runner (max_runners = 1).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support.server import ModelbusServer, clean_env, free_port  # noqa: E402

HELLO = ROOT / "examples" / "hello"
BODY = b'{"name": "Ada"}'


@dataclass(frozen=True, kw_only=True)
class Figures:
    name: str
    calls: int
    errors: int
    seconds: float
    p50_ms: float
    p99_ms: float

    @property
    def per_s(self) -> float:
        return self.calls / self.seconds


# --- the bare baseline --------------------------------------------------------------------


def bare_app() -> object:
    """A Starlette app with one route calling hello's ``apply`` in process."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    spec = importlib.util.spec_from_file_location("hello_model", HELLO / "model.py")
    assert spec and spec.loader
    model = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(model)

    async def call(request: Request) -> JSONResponse:
        return JSONResponse({"result": model.apply(await request.json())})

    return Starlette(routes=[Route("/call", call, methods=["POST"])])


def serve_bare(port: int) -> None:
    import uvicorn

    uvicorn.run(bare_app(), host="127.0.0.1", port=port, log_level="warning", access_log=False)


def start_bare() -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    argv = [sys.executable, __file__, "--serve-bare", str(port)]
    process = subprocess.Popen(argv, env=clean_env(), stdout=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            httpx.post(f"{url}/call", content=BODY, timeout=1).raise_for_status()
            return process, url
        except httpx.TransportError:
            time.sleep(0.05)
    process.kill()
    raise RuntimeError("the bare server did not start")


# --- load ---------------------------------------------------------------------------------


async def load(
    name: str, url: str, headers: dict[str, str], seconds: float, concurrency: int, warmup_s: float
) -> Figures:
    latencies: list[float] = []
    errors = 0
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(headers=headers, limits=limits, timeout=30) as http:

        async def worker(until: float, record: bool) -> None:
            nonlocal errors
            while time.perf_counter() < until:
                started = time.perf_counter()
                response = await http.post(url, content=BODY)
                if response.status_code != 200:
                    errors += 1
                elif record:
                    latencies.append(time.perf_counter() - started)

        warm_until = time.perf_counter() + warmup_s
        await asyncio.gather(*(worker(warm_until, False) for _ in range(concurrency)))
        errors = 0
        started = time.perf_counter()
        until = started + seconds
        await asyncio.gather(*(worker(until, True) for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    ordered = sorted(latencies)
    return Figures(
        name=name,
        calls=len(ordered),
        errors=errors,
        seconds=elapsed,
        p50_ms=statistics.median(ordered) * 1000,
        p99_ms=ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000,
    )


def report(modelbus: Figures, bare: Figures) -> None:
    print(f"{'':<28}{'calls/s':>10}{'p50 ms':>10}{'p99 ms':>10}{'errors':>8}")
    for f in (modelbus, bare):
        print(f"{f.name:<28}{f.per_s:>10.0f}{f.p50_ms:>10.2f}{f.p99_ms:>10.2f}{f.errors:>8}")
    print(
        f"modelbus / bare: throughput x{modelbus.per_s / bare.per_s:.2f}, "
        f"p50 x{modelbus.p50_ms / bare.p50_ms:.1f}, p99 x{modelbus.p99_ms / bare.p99_ms:.1f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="measured load per target")
    parser.add_argument("--concurrency", type=int, default=16, help="concurrent clients")
    parser.add_argument("--warmup", type=float, default=2.0, help="unmeasured seconds first")
    parser.add_argument("--serve-bare", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_bare:
        serve_bare(args.serve_bare)
        return
    with tempfile.TemporaryDirectory() as tmp, ModelbusServer.start(Path(tmp) / "data") as server:
        with server.client() as client:
            client.push(HELLO, version="1.0.0")
        headers = {
            "Authorization": f"Simple {server.admin_key}",
            "Content-Type": "application/json",
        }
        url = f"{server.url}/v1/algo/examples/hello/1.0.0"
        print(f"load: {args.concurrency} clients, {args.seconds:.0f} s each, after {args.warmup} s")
        modelbus = asyncio.run(
            load(
                "modelbus /v1/algo (HTTP)",
                url,
                headers,
                args.seconds,
                args.concurrency,
                args.warmup,
            )
        )
    bare_process, bare_url = start_bare()
    try:
        bare = asyncio.run(
            load(
                "bare Starlette, in process",
                f"{bare_url}/call",
                {"Content-Type": "application/json"},
                args.seconds,
                args.concurrency,
                args.warmup,
            )
        )
    finally:
        bare_process.terminate()
        bare_process.wait(10)
    report(modelbus, bare)


if __name__ == "__main__":
    main()
