#!/usr/bin/env python
"""What a typical 3-minute booking call costs on each voice engine, from the product's own price tables.

    .venv/bin/python bench/engine_cost.py [--minutes 3] [--out docs/benchmarks.md]

No model is called: the call is described by the assumptions printed with the figures (how long each side speaks,
how many replies, what the reasoning takes), turned into the usage each engine would report — Realtime's tokens per
response, re-reading the conversation each time; GPT-Live's active seconds — and priced with the same code that
prices real calls (`calls.services.lifecycle.Usage`, `voice.supervisor.supervisor_cost_usd`) and the tables in
settings (REALTIME_PRICES, LIVE_PRICES, SUPERVISOR_PRICES). Change an assumption with the flags to see its weight.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "receptionist.settings")
os.environ.setdefault("SECRET_KEY", "bench-engine-cost-only")
os.environ.setdefault("DEBUG", "true")

import django  # noqa: E402

django.setup()

from django.conf import settings  # noqa: E402
from django.test import override_settings  # noqa: E402

from bench.harness import write_section  # noqa: E402
from calls.services.lifecycle import Usage  # noqa: E402
from voice.supervisor import SupervisorResult, supervisor_cost_usd  # noqa: E402

SECTION = "## Voice engines: cost of a typical booking call (bench/engine_cost.py)"
# OpenAI's Realtime audio token rates: caller audio about 1 token per 100 ms, agent audio about 1 per 50 ms.
CALLER_AUDIO_TOKENS_PER_S = 10
AGENT_AUDIO_TOKENS_PER_S = 20


@dataclass(frozen=True)
class Call:
    seconds: float
    caller_speech_s: float
    agent_speech_s: float
    replies: int  # agent responses (greeting included)
    instruction_tokens: int  # instructions + tool definitions, text
    reasoning_runs: int  # supervisor hand-offs (Realtime) = delegations (GPT-Live)
    steps_per_run: int  # model calls per run (a tool call, then the answer)
    prompt_tokens_per_step: int
    output_tokens_per_step: int


def realtime_usage(call: Call) -> Usage:
    """Each response re-reads the session: instructions and every earlier turn (cached), plus the caller's new turn."""
    usage = Usage()
    caller_per_turn = call.caller_speech_s * CALLER_AUDIO_TOKENS_PER_S / max(1, call.replies - 1)
    agent_per_reply = call.agent_speech_s * AGENT_AUDIO_TOKENS_PER_S / call.replies
    heard = 0.0  # audio tokens in the conversation so far
    for reply in range(call.replies):
        new_audio = caller_per_turn if reply else 0.0
        usage.input_text += call.instruction_tokens
        usage.cached_text += call.instruction_tokens if reply else 0
        usage.input_audio += round(heard + new_audio)
        usage.cached_audio += round(heard)
        usage.output_audio += round(agent_per_reply)
        usage.output_text += round(agent_per_reply / 4)  # the reply's transcript
        heard += new_audio + agent_per_reply
    usage.input_cached = usage.cached_text + usage.cached_audio
    return usage


def reasoning(call: Call) -> SupervisorResult:
    """The supervisor's runs (Realtime), or the same work done by GPT-Live's backend: later steps of a run re-read
    the earlier ones, so half of their prompt is cached."""
    result = SupervisorResult(answer="")
    for _ in range(call.reasoning_runs):
        for step in range(call.steps_per_run):
            result.prompt_tokens += call.prompt_tokens_per_step
            result.cached_tokens += call.prompt_tokens_per_step // 2 if step else 0
            result.completion_tokens += call.output_tokens_per_step
    return result


def costs(call: Call) -> list[tuple[str, str, Decimal, Decimal]]:
    """(engine and models, what the voice part is billed on, voice cost, reasoning cost) per configuration."""
    rows = []
    work = reasoning(call)
    for model in ("gpt-realtime-2.1", "gpt-realtime-2.1-mini"):
        usage = realtime_usage(call)
        for reasoner in ("gpt-4.1", "gpt-4.1-mini"):
            with override_settings(OPENAI_SUPERVISOR_MODEL=reasoner):
                rows.append((f"Realtime `{model}` + supervisor `{reasoner}`",
                             f"{usage.input_audio:,} audio in ({usage.cached_audio:,} cached) / "
                             f"{usage.output_audio:,} audio out tokens",
                             usage.cost_usd(model), supervisor_cost_usd(work)))
    for model in ("gpt-live-1.1",):
        for reasoner in ("gpt-4.1", "gpt-4.1-mini"):
            usage = Usage(voice_seconds=call.seconds, backend_in=work.prompt_tokens, backend_cached=work.cached_tokens,
                          backend_out=work.completion_tokens)
            with override_settings(OPENAI_DELEGATION_MODEL=reasoner):
                rows.append((f"GPT-Live `{model}` + backend `{reasoner}`", f"{call.seconds:.0f} s active",
                             usage.voice_cost_usd(model), usage.backend_cost_usd()))
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=3.0)
    parser.add_argument("--caller-share", type=float, default=0.35, help="share of the call the caller speaks")
    parser.add_argument("--agent-share", type=float, default=0.40, help="share of the call the agent speaks")
    parser.add_argument("--replies", type=int, default=10)
    parser.add_argument("--instruction-tokens", type=int, default=2000)
    parser.add_argument("--runs", type=int, default=2, help="reasoning runs (availability, then the booking)")
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--prompt-tokens", type=int, default=3000)
    parser.add_argument("--output-tokens", type=int, default=60)
    parser.add_argument("--out", default="", help="write the section into this Markdown file")
    args = parser.parse_args()
    seconds = args.minutes * 60
    call = Call(seconds=seconds, caller_speech_s=seconds * args.caller_share, agent_speech_s=seconds * args.agent_share,
                replies=args.replies, instruction_tokens=args.instruction_tokens, reasoning_runs=args.runs,
                steps_per_run=args.steps, prompt_tokens_per_step=args.prompt_tokens,
                output_tokens_per_step=args.output_tokens)
    rows = costs(call)
    command = "python bench/engine_cost.py" + (f" --out {args.out}" if args.out else "")
    lines = [
        SECTION, "",
        "What one typical booking call costs on each engine, computed (no model called) with the product's own "
        "pricing code and the price tables in `receptionist/settings.py` as of Nov 2026.", "",
        f"- Command: `{command}` (from the repository root, with `.venv/bin/python`)",
        f"- Date: {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC",
        f"- The call: {args.minutes:g} minutes; the caller speaks {call.caller_speech_s:.0f} s, the agent "
        f"{call.agent_speech_s:.0f} s over {call.replies} replies; {call.instruction_tokens:,} tokens of "
        f"instructions and tools; {call.reasoning_runs} reasoning runs (availability, then the booking) of "
        f"{call.steps_per_run} model steps, each reading {call.prompt_tokens_per_step:,} tokens (half cached after "
        f"the first step) and writing {call.output_tokens_per_step}.",
        f"- Realtime: audio at about {CALLER_AUDIO_TOKENS_PER_S} tokens/s from the caller and "
        f"{AGENT_AUDIO_TOKENS_PER_S} tokens/s from the agent; every reply re-reads the instructions and the "
        "conversation so far (cached) plus the caller's new turn. GPT-Live: the whole call is active time "
        "(speech, silence and waiting on the backend all count), billed per second; the backend does the same "
        "reasoning work as the supervisor. Neither includes Realtime's input transcription or Twilio's minutes.",
        "",
        "| Engine and models | Voice billed on | Voice | Reasoning | Total | Per minute |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for name, basis, voice, thinking in rows:
        total = voice + thinking
        lines.append(f"| {name} | {basis} | ${voice:.4f} | ${thinking:.4f} | **${total:.4f}** | "
                     f"${total / Decimal(str(args.minutes)):.4f} |")
    lines += ["", "Live prices: " + ", ".join(f"`{m}` ${p['active_minute']}/min" for m, p in
                                            settings.LIVE_PRICES.items() if m != "default") + "."]
    section = "\n".join(lines) + "\n"
    print(section)
    return write_section(args.out, SECTION, section) if args.out else 0


if __name__ == "__main__":
    sys.exit(main())
