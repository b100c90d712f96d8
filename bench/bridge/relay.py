"""The bare relay (the floor for a Python bridge) and the fallback echo stand-in, each run as a subprocess of
bench/bridge_latency.py (`--_relay`, `--_standin`)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from bench.bridge.config import MODEL


def relay_main(port: int, upstream: str) -> None:
    """A minimal Twilio ⇄ Realtime relay on plain `websockets`: the floor for a Python bridge. No Django."""
    import uvloop
    from websockets.asyncio.client import connect
    from websockets.asyncio.server import serve
    from websockets.exceptions import ConnectionClosed

    async def pump(up: Any, ws: Any, stream_sid: str) -> None:
        media = '{"event":"media","streamSid":"' + stream_sid + '","media":{"payload":"'
        mark = '{"event":"mark","streamSid":"' + stream_sid + '","mark":{"name":"'
        sent = 0
        async for raw in up:
            event = json.loads(raw)
            if event.get("type") == "response.output_audio.delta":
                sent += 1
                await ws.send(media + event["delta"] + '"}}')
                await ws.send(mark + event["item_id"] + ":" + str(sent) + '"}}')

    async def handler(ws: Any) -> None:
        up, reader = None, None
        try:
            async for raw in ws:
                frame = json.loads(raw)
                event = frame.get("event")
                if event == "media":
                    if up is not None:
                        await up.send('{"type":"input_audio_buffer.append","audio":"' + frame["media"]["payload"] + '"}')
                elif event == "start":
                    up = await connect(f"{upstream}?model={MODEL}", additional_headers={"Authorization": "Bearer sk-bench"},
                                       open_timeout=8, max_size=16 * 2**20, ping_interval=20, ping_timeout=20)
                    reader = asyncio.create_task(pump(up, ws, frame["start"]["streamSid"]))
                elif event == "stop":
                    break
        except ConnectionClosed:
            pass
        finally:
            if reader is not None:
                reader.cancel()
            if up is not None:
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
