"""Offline tools: local stand-ins for the services a call talks to, and a simulated caller.

- ``voice.offline.realtime``: the OpenAI Realtime API (WebSocket) and Chat Completions stand-in.
- ``voice.offline.twilio``: the Twilio REST API stand-in.
- ``voice.offline.simulator``: a simulated Twilio caller (webhook, TwiML, Media Streams).
- ``voice.offline.audio``: audio helpers both use (μ-law, tone, espeak-ng, WAV).

They serve tests, demos, benchmarks and the ``realtime_standin`` / ``twilio_standin`` / ``simulate_call``
management commands. The live call path never imports this package (tests/test_layout.py checks it).
"""
