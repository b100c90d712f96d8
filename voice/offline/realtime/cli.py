"""Running the stand-in from the command line (``python -m voice.offline.realtime``, ``manage.py realtime_standin``)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
from typing import Any, Callable

from voice.offline.realtime.server import RealtimeStandin


async def serve_until_signalled(standin: RealtimeStandin, out: Callable[[str], None] = print) -> None:
    """Run ``standin`` until SIGINT/SIGTERM, printing the environment variables to set."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    async with standin:
        mode = "echo+scripted" if standin.echo_scripted else "echo" if standin.echo else f"scripted, audio={standin.audio}, speed={standin.speed:g}x"
        out(f"OpenAI Realtime stand-in listening on {standin.http_url} ({mode})")
        out("Set:")
        out(f"  OPENAI_REALTIME_URL={standin.url}")
        out(f"  OPENAI_BASE_URL={standin.base_url}")
        out(f"GPT-Live sessions (same port, model in session.start): {standin.live_url}")
        out(f"Session log: {standin.http_url}/standin/sessions   Chat log: {standin.http_url}/standin/chat"
            "   (Ctrl-C to stop)")
        await stop.wait()
    out("Stand-in stopped.")


def build_arg_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    parser = parser or argparse.ArgumentParser(prog="python -m voice.offline.realtime",
                                               description="Local OpenAI Realtime stand-in.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--script", help="JSON conversation script (format: voice/offline/realtime/script.py)")
    parser.add_argument("--echo", action="store_true", help="echo every append back as one audio delta")
    parser.add_argument("--echo-scripted", action="store_true",
                        help="echo every append and also run the script on it (soak benchmarks)")
    parser.add_argument("--audio", choices=("tone", "espeak"), default="tone")
    parser.add_argument("--speed", type=float, default=3.0, help="generation speed vs real time (0: unpaced)")
    return parser


def standin_from_options(options: dict[str, Any]) -> RealtimeStandin:
    return RealtimeStandin(
        script=options.get("script") or None, echo=bool(options.get("echo")),
        echo_scripted=bool(options.get("echo_scripted")), audio=options.get("audio") or "tone",
        speed=options.get("speed", 3.0), host=options.get("host") or "127.0.0.1", port=options.get("port", 8765),
    )


def main(argv: list[str] | None = None) -> None:
    args = build_arg_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    asyncio.run(serve_until_signalled(standin_from_options(vars(args)), out=lambda s: print(s, flush=True)))
