#!/usr/bin/env python
"""What a business's MCP tools add to each supervisor step: building the tool list from the database cache.

    .venv/bin/python bench/mcp_tools.py [--tools 20] [--count 2000] [--out docs/benchmarks.md]

The supervisor offers the built-in tools plus the business's enabled MCP tools (`calls.tools.supervisor_tools`),
read from the database — the servers are listed on save, on demand and by celery beat, never during a call. This
times, in one process against a PostgreSQL bench database (dropped and re-created, see bench/README.md):

- the list's read, `supervisor_tools(business_id=…)`, for a business with no MCP server and for one with `--tools`
  tools on one server (the supervisor reads it once per run; counted here as if every step did);
- what the longer list costs every step on our side: serialising the request body's `tools` (the OpenAI SDK
  encodes the whole request each step), with and without the MCP tools.

The model's own time for the longer prompt is not ours to measure here (the stand-in answers at once). The figure
the issue sets is "< 5 ms added per supervisor step with 20 MCP tools"; the added time reported is the p99 of the
read plus the p99 of the extra serialisation.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.harness import (bench_stores, fmt, load_average, machine, package_versions, percentile,  # noqa: E402
                           recreate_database, write_section)

SECTION = "## MCP tools: what the cached tool list adds per supervisor step (bench/mcp_tools.py)"
BENCH_DB, _ = bench_stores("receptionist_bench_mcp", 10)


def bench_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "PG"))}
    env.pop("REDIS_URL", None)
    env.update({"DJANGO_SETTINGS_MODULE": "receptionist.settings", "DEBUG": "false",
                "SECRET_KEY": "bench-" + secrets.token_urlsafe(48),
                "DATABASE_URL": f"postgres://postgres@127.0.0.1:5432/{BENCH_DB}",
                "PUBLIC_BASE_URL": "http://127.0.0.1:8000", "ALLOWED_HOSTS": "127.0.0.1", "STATIC_MANIFEST": "false",
                "LOG_LEVEL": "WARNING"})
    return env


def tool_schema(n: int) -> dict:
    # A typical business tool: a few typed parameters, one of them an enum, with descriptions.
    return {"type": "object", "required": ["order_id"], "properties": {
        "order_id": {"type": "string", "description": f"The order number the caller gives (tool {n})."},
        "include_items": {"type": "boolean", "description": "Whether to list the order's items."},
        "channel": {"type": "string", "enum": ["web", "phone", "store"], "description": "Where it was ordered."}}}


def make_businesses(tools: int) -> tuple[int, int]:
    from accounts.models import Business
    from calls.models import McpServer, McpTool

    plain = Business.objects.create(name="No MCP")
    with_mcp = Business.objects.create(name="With MCP")
    server = McpServer.objects.create(business=with_mcp, name="orders", url="https://tools.example.com/mcp",
                                      status=McpServer.Status.OK)
    McpTool.objects.bulk_create([McpTool(server=server, name=f"tool_{n:02d}", input_schema=tool_schema(n),
                                         description=f"Looks up something about an order ({n}).")
                                 for n in range(tools)])
    return plain.id, with_mcp.id


def timed(fn, count: int) -> list[float]:
    fn()  # warm: connection opened, query compiled
    out = []
    for _ in range(count):
        t0 = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t0) * 1000)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tools", type=int, default=20)
    parser.add_argument("--count", type=int, default=2000)
    parser.add_argument("--out", help="write the section into this file (e.g. docs/benchmarks.md)")
    args = parser.parse_args()
    env = bench_env()
    with tempfile.TemporaryDirectory(prefix="bench-mcp-") as log_dir:
        recreate_database(BENCH_DB, env, Path(log_dir))
    os.environ.update(env)
    import django

    django.setup()
    from calls.tools import SUPERVISOR_TOOLS, supervisor_tools

    plain, with_mcp = make_businesses(args.tools)
    read_plain = timed(lambda: supervisor_tools(business_id=plain), args.count)
    read_mcp = timed(lambda: supervisor_tools(business_id=with_mcp), args.count)
    listed = supervisor_tools(business_id=with_mcp)
    assert len(listed) == len(SUPERVISOR_TOOLS) + args.tools
    encode_plain = timed(lambda: json.dumps({"tools": SUPERVISOR_TOOLS}), args.count)
    encode_mcp = timed(lambda: json.dumps({"tools": listed}), args.count)
    added = percentile(read_mcp, 99) + max(0.0, percentile(encode_mcp, 99) - percentile(encode_plain, 50))
    body_plain, body_mcp = len(json.dumps(SUPERVISOR_TOOLS)), len(json.dumps(listed))

    def row(label: str, values: list[float]) -> str:
        return f"| {label} | {fmt(percentile(values, 50), 3)} | {fmt(percentile(values, 99), 3)} |"

    section = "\n".join([
        SECTION, "",
        f"`.venv/bin/python bench/mcp_tools.py --tools {args.tools} --count {args.count}` on {machine()}; load "
        f"average at the end {load_average()}; {package_versions(['Django', 'psycopg', 'mcp'])}; PostgreSQL on "
        "loopback.", "",
        "| per supervisor step, ms | p50 | p99 |", "| --- | --- | --- |",
        row("tool list read, no MCP server (`supervisor_tools`)", read_plain),
        row(f"tool list read, {args.tools} MCP tools on one server", read_mcp),
        row(f"`tools` JSON-encoded, built-in only ({len(SUPERVISOR_TOOLS)} tools, {body_plain:,} bytes)",
            encode_plain),
        row(f"`tools` JSON-encoded, with the {args.tools} MCP tools ({body_mcp:,} bytes)", encode_mcp), "",
        f"Added per step with {args.tools} MCP tools, at worst (p99 read + p99 extra encoding, as if every step read "
        f"the list; the supervisor reads it once per run): **{added:.2f} ms** (goal < 5 ms). No MCP server is asked "
        "during a step: the list comes from the database, kept fresh on save, on demand and by celery beat. Not "
        "measured: the model's time for a longer prompt (each MCP tool adds its schema's tokens to every step).",
    ])
    print(section)
    if args.out:
        return write_section(args.out, SECTION, section)
    return 0


if __name__ == "__main__":
    sys.exit(main())
