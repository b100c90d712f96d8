"""The bare relay (the floor for a Python bridge) and the fallback echo stand-in, each run as a subprocess of
bench/bridge_latency.py (`--_relay`, `--_standin`)."""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

from bench.bridge.calls import LIVE_START, OUTPUT_DELTA
from bench.bridge.config import MODEL


def relay_main(port: int, upstream: str, engine: str = "realtime") -> None:
    """A minimal Twilio ⇄ OpenAI relay on plain `websockets`: the floor for a Python bridge. No Django. `engine`:
    Realtime (`input_audio_buffer.append` / `response.output_audio.delta`) or GPT-Live (`session.start`, wait for
    `session.started`, then `session.input_audio.append` / `session.output_audio.delta`; `session.close` at `stop`)."""
    import uvloop
    from websockets.asyncio.client import connect
    from websockets.asyncio.server import serve
    from websockets.exceptions import ConnectionClosed

    live = engine == "live"
    delta_type = OUTPUT_DELTA[engine]
    append = '{"type":"session.input_audio.append","audio":"' if live else \
        '{"type":"input_audio_buffer.append","audio":"'

    async def pump(up: Any, ws: Any, stream_sid: str) -> None:
        media = '{"event":"media","streamSid":"' + stream_sid + '","media":{"payload":"'
        mark = '{"event":"mark","streamSid":"' + stream_sid + '","mark":{"name":"'
        sent = 0
        async for raw in up:
            event = json.loads(raw)
            if event.get("type") == delta_type:
                sent += 1
                await ws.send(media + event["delta"] + '"}}')
                await ws.send(mark + event.get("item_id", "live") + ":" + str(sent) + '"}}')

    async def open_upstream() -> Any:
        if not live:
            return await connect(f"{upstream}?model={MODEL}", additional_headers={"Authorization": "Bearer sk-bench"},
                                 open_timeout=8, max_size=16 * 2**20, ping_interval=20, ping_timeout=20)
        up = await connect(upstream, additional_headers={"Authorization": "Bearer sk-bench"}, open_timeout=8,
                           max_size=16 * 2**20, ping_interval=20, ping_timeout=20)
        await up.send(LIVE_START)
        async with asyncio.timeout(8):
            while json.loads(await up.recv()).get("type") != "session.started":
                pass
        return up

    async def handler(ws: Any) -> None:
        up, reader = None, None
        try:
            async for raw in ws:
                frame = json.loads(raw)
                event = frame.get("event")
                if event == "media":
                    if up is not None:
                        await up.send(append + frame["media"]["payload"] + '"}')
                elif event == "start":
                    up = await open_upstream()
                    reader = asyncio.create_task(pump(up, ws, frame["start"]["streamSid"]))
                elif event == "stop":
                    break
        except ConnectionClosed:
            pass
        finally:
            if reader is not None:
                reader.cancel()
            if up is not None:
                if live:
                    with contextlib.suppress(ConnectionClosed):
                        await up.send('{"type":"session.close"}')
                await up.close()

    async def main() -> None:
        async with serve(handler, "127.0.0.1", port, max_size=2**16) as server:
            await server.serve_forever()

    uvloop.run(main())


def fallback_standin_main(port: int) -> None:
    """FALLBACK ONLY (--builtin-standin): a tiny echo stand-in, NOT voice/offline/realtime/. Results say so."""
    import uvloop
    from websockets.asyncio.server import serve
    from websockets.exceptions import ConnectionClosed

    async def handler(ws: Any) -> None:
        if not ws.request.headers.get("Authorization", "").startswith("Bearer "):
            await ws.close(4401, "missing bearer")
            return
        try:
            async for raw in ws:
                event = json.loads(raw)
                if event.get("type") == "input_audio_buffer.append":
                    await ws.send(json.dumps({"type": "response.output_audio.delta", "event_id": "evt_echo",
                                              "response_id": "resp_echo", "item_id": "item_echo", "output_index": 0,
                                              "content_index": 0, "delta": event["audio"]}))
        except ConnectionClosed:
            pass

    async def main() -> None:
        async with serve(handler, "127.0.0.1", port, max_size=16 * 2**20) as server:
            await server.serve_forever()

    uvloop.run(main())
