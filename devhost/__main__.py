"""`python -m devhost [--port 7071] [--host 127.0.0.1] [--root DIR]`: serve the function app until
SIGINT or SIGTERM."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from pathlib import Path

from devhost.app import DevHost, HostStartupError
from shared.errors import ConfigError

log = logging.getLogger("devhost")

REPO_ROOT = Path(__file__).resolve().parent.parent


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m devhost",
        description="Serve the function app locally as the Azure Functions host would (no Core Tools needed).",
    )
    parser.add_argument("--port", type=int, default=7071, help="HTTP port (default 7071, as func start)")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--root", type=Path, default=REPO_ROOT,
                        help="the function app folder, holding host.json (default: this repository's root)")
    return parser.parse_args(argv)


async def serve(root: Path, host: str, port: int) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    dev = DevHost(root, port=port, host=host)
    await dev.start()
    try:
        await stop.wait()
        log.info("devhost stopping")
    finally:
        await dev.stop()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # The SDKs log every request at INFO, with URLs; one line per invocation is what devhost promises.
    logging.getLogger("azure").setLevel(logging.WARNING)
    root = args.root.resolve()
    # Function folders import `shared` and each other from the app root, as they do under the host.
    sys.path.insert(0, str(root))
    try:
        asyncio.run(serve(root, args.host, args.port))
    except (HostStartupError, ConfigError) as exc:
        log.error("%s", exc)
        return 1
    except OSError as exc:
        log.error("cannot listen on %s:%s: %s", args.host, args.port, exc)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
