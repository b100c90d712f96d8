"""The Realtime protocol's constants, defaults, error type, ids and token estimates (the stand-in's
shared vocabulary)."""

from __future__ import annotations

import itertools
import json
import math
import secrets
from typing import Any


BETA_DISABLED_MESSAGE = "The Realtime Beta API is no longer supported. Please use /v1/realtime for the GA API."
SESSION_EXPIRED_MESSAGE = "Your session hit the maximum duration of 60 minutes."
DEFAULT_MODEL = "gpt-realtime"
DEFAULT_GREETING = "Hello, thanks for calling. How can I help you today?"
DEFAULT_AGENT = "I'm sorry, could you say that again?"
DEFAULT_AFTER_TOOL = "Okay."
DEFAULT_OUT_OF_BAND = "OK."
DEFAULT_INSTRUCTIONS = "You are a helpful, friendly voice assistant. Keep your answers short."
MAX_LOGGED_EVENTS = 10_000
MAX_MESSAGE_BYTES = 16 * 2**20  # the real API takes appends up to 15 MiB
MAX_HTTP_BODY = 16 * 2**20
MIN_COMMIT_MS = 100
OPEN_TIMEOUT_S = 10.0  # opening handshake / plain HTTP request limit (websockets' default open_timeout)

DEFAULT_TURN_DETECTION = {
    "server_vad": {
        "type": "server_vad",
        "threshold": 0.5,
        "prefix_padding_ms": 300,
        "silence_duration_ms": 500,
        "idle_timeout_ms": None,
        "create_response": True,
        "interrupt_response": True,
    },
    "semantic_vad": {"type": "semantic_vad", "eagerness": "auto", "create_response": True, "interrupt_response": True},
}

DEFAULT_SESSION: dict[str, Any] = {
    "type": "realtime",
    "object": "realtime.session",
    "output_modalities": ["audio"],
    "instructions": DEFAULT_INSTRUCTIONS,
    "tools": [],
    "tool_choice": "auto",
    "max_output_tokens": "inf",
    "tracing": None,
    "truncation": "auto",
    "prompt": None,
    "include": None,
    "audio": {
        "input": {
            "format": {"type": "audio/pcm", "rate": 24000},
            "transcription": None,
            "noise_reduction": None,
            "turn_detection": DEFAULT_TURN_DETECTION["server_vad"],
        },
        "output": {"format": {"type": "audio/pcm", "rate": 24000}, "voice": "marin", "speed": 1.0},
    },
}

# Fields the GA session accepts (session.update); anything else is "unknown_parameter".
_SESSION_KEYS = {
    "type", "model", "output_modalities", "instructions", "audio", "tools", "tool_choice",
    "max_output_tokens", "tracing", "truncation", "prompt", "include", "reasoning",
    "parallel_tool_calls", "id", "object", "expires_at",
}
_AUDIO_INPUT_KEYS = {"format", "transcription", "noise_reduction", "turn_detection"}
_AUDIO_OUTPUT_KEYS = {"format", "voice", "speed"}
_CLIENT_EVENTS = (
    "session.update", "input_audio_buffer.append", "input_audio_buffer.commit", "input_audio_buffer.clear",
    "conversation.item.create", "conversation.item.truncate", "conversation.item.delete",
    "conversation.item.retrieve", "response.create", "response.cancel", "output_audio_buffer.clear",
)
_MODELS = (
    "gpt-realtime", "gpt-realtime-2025-08-28", "gpt-realtime-mini", "gpt-realtime-1.5", "gpt-realtime-2",
    "gpt-realtime-2.1", "gpt-realtime-2.1-mini", "gpt-4.1", "gpt-4.1-mini", "gpt-4o-mini-transcribe",
)
_TRACKED_HEADER_BETA = "OpenAI-Beta"


def _text_tokens(text: str | None) -> int:
    return math.ceil(len((text or "").split()) * 1.3)


def _user_audio_tokens(ms: float) -> int:
    return math.ceil(ms / 100)


def _assistant_audio_tokens(ms: float) -> int:
    return math.ceil(ms / 50)


def _prompt_text_tokens(instructions: str | None, tools: list | None) -> int:
    """Text tokens of a prompt's instructions and tool definitions (~4 characters a token for the JSON)."""
    return _text_tokens(instructions) + (math.ceil(len(json.dumps(tools)) / 4) if tools else 0)


def _cached_tokens(previous_prompt: int, prompt: int) -> int:
    """Prompt caching: once the previous prompt exceeds 1024 tokens, its shared prefix is cached in 64-token blocks."""
    return min(prompt, previous_prompt) // 64 * 64 if previous_prompt >= 1024 else 0


def _call_tokens(arguments: str) -> int:
    """Output tokens of one function call: its JSON arguments at ~4 characters a token, plus a few for the call."""
    return math.ceil(len(arguments) / 4) + 5


class _Ids:
    """Unique, cheap ids: prefix + server tag + counter."""

    def __init__(self) -> None:
        self.tag = "".join(secrets.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789") for _ in range(8))
        self.counter = itertools.count(1)

    def new(self, prefix: str) -> str:
        return f"{prefix}_{self.tag}{next(self.counter):08x}"


class _Error(Exception):
    """A client mistake answered with an ``error`` event."""

    def __init__(self, code: str | None, message: str, param: str | None = None, type_: str = "invalid_request_error"):
        super().__init__(message)
        self.code, self.message, self.param, self.type = code, message, param, type_
