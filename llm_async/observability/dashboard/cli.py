"""``llm-async dashboard``: serve the live dashboard, optionally on demo traffic.

The command only parses its arguments and starts the parts: the web application
(:mod:`.app`), the demo traffic (:mod:`.demo`) and the embedded provider server
(:mod:`llm_async.testing`) are imported when asked for.
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Sequence

__all__ = ["main"]


async def _demo(host: str, port: int, rate: float, error_rate: float) -> None:
    from ...testing import Fault, MockProviderServer
    from ..facade import get_observability
    from .app import DashboardServer
    from .demo import run_demo_traffic

    obs = get_observability()
    async with MockProviderServer(token_delay=0.01) as server:
        if error_rate > 0:
            server.add_fault(Fault(status=500, probability=error_rate, times=None))
        async with DashboardServer(obs, host=host, port=port) as dashboard:
            print(f"llm_async dashboard: {dashboard.url}  (demo provider at {server.base_url})",
                  flush=True)
            await run_demo_traffic(server.base_url, observability=obs, rate=rate)


async def _serve(host: str, port: int) -> None:
    from .app import serve_dashboard

    await serve_dashboard(host, port)


def main(argv: Sequence[str] | None = None) -> int:
    """``llm-async dashboard``: serve the dashboard (with ``--demo``, on demo traffic)."""
    parser = argparse.ArgumentParser(prog="llm-async dashboard",
                                     description="Serve the live llm_async dashboard.")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=int, default=8050, help="port to listen on")
    parser.add_argument("--demo", action="store_true",
                        help="start the embedded provider server and send demo traffic")
    parser.add_argument("--rate", type=float, default=5.0, help="demo calls per second")
    parser.add_argument("--error-rate", type=float, default=0.05,
                        help="share of demo calls the provider fails (5xx)")
    args = parser.parse_args(argv)
    try:
        if args.demo:
            asyncio.run(_demo(args.host, args.port, args.rate, args.error_rate))
        else:
            print(f"llm_async dashboard: http://{args.host}:{args.port}/", flush=True)
            asyncio.run(_serve(args.host, args.port))
    except KeyboardInterrupt:
        pass
    return 0
