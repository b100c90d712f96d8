#!/usr/bin/env python
"""Dashboard server time at 100,000 calls: the calls list (first page, a deep page, a filtered page, searches) and
a call's detail with 500 timeline rows, with each page's query count.

    .venv/bin/python bench/dashboard.py [--calls 100000] [--iterations 200] [--db NAME] [--out docs/benchmarks.md]

Seeds one business with N calls (four transcript turns each) and four other businesses with N/40 calls each, by
COPY; builds every call's search document with the product's own statement
(`calls.services.search_document.SEARCH_REFRESH_SQL`, in id ranges); adds one call with 250 turns and 250 events;
VACUUM ANALYZE. Then, in this process, times each page through Django's test client (the whole request: middleware,
session, auth, the view, the template; no network) with a signed-in owner, DEBUG off. Query counts are taken on
separate requests (so capturing them costs nothing in the timings) for the big business and for a small one (200
calls, a 10-row detail) to show they do not grow with the data. It uses its own PostgreSQL database (dropped and
re-created). Everything binds to 127.0.0.1.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import random
import secrets
import statistics
import sys
import time
from decimal import Decimal
from pathlib import Path

# The repository root, so `bench.*` and the product's apps import when this runs as a script.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.harness import REPO, machine, percentile, recreate_database, write_section  # noqa: E402

SECTION = "## Dashboard calls pages (bench/dashboard.py)"

FIRST = ["Ann", "Ben", "Carla", "David", "Elena", "Farid", "Grace", "Hiro", "Ines", "Jamal", "Kate", "Luis", "Maya",
         "Noah", "Olga", "Priya", "Quinn", "Rosa", "Sam", "Tara", "Umar", "Vera", "Will", "Xena", "Yusuf", "Zoe"]
LAST = ["Lee", "Garcia", "Smith", "Nguyen", "Kowalski", "Okafor", "Rossi", "Tanaka", "Dubois", "Silva", "Khan",
        "Murphy", "Novak", "Haddad", "Berg", "Costa", "Fischer", "Ivanova", "Moreau", "Patel"]
SERVICES = ["cleaning", "check-up", "whitening", "filling", "crown", "X-ray", "consultation", "extraction"]
DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"]
CALLER_LINES = [
    "Hi, I'd like to book a {service} on {day} if you have anything.",
    "Hello, can I move my {service} appointment to {day}?",
    "Hi, how much does a {service} cost?",
    "Do you have parking near the clinic? I'm coming in on {day}.",
    "I need to cancel my {service} on {day}, something came up.",
    "Can someone call me back about my invoice?",
]
AGENT_LINES = [
    "Thanks for calling, how can I help you today?",
    "Let me check {day} for a {service}. I have ten thirty or two fifteen.",
    "A {service} is one hundred and twenty dollars.",
    "Done, you're all set for {day}. Anything else?",
    "I've taken a message and someone will call you back today.",
]
OUTCOMES = ["booked"] * 30 + ["answered"] * 30 + ["message_taken"] * 15 + ["rescheduled"] * 8 + ["cancelled"] * 7 + \
    ["transferred"] * 4 + ["abandoned"] * 5 + ["spam"]
RARE_WORD = "periodontist"  # said in about 1 call in 500: a selective search








# --- seeding ----------------------------------------------------------------------------------------------------

def call_columns() -> list[str]:
    from calls.models import Call

    return [f.column for f in Call._meta.concrete_fields]


def seed_calls(cursor, *, business_id: int, count: int, first_id: int, first_entry_id: int, now: dt.datetime,
               rng: random.Random, numbers: list[str]) -> tuple[int, int]:
    """COPY `count` finished calls (spread over the last 365 days) and four turns each; returns the next ids."""
    from calls.models import Call, TranscriptEntry

    columns = call_columns()
    defaults = {f.column: f.get_default() for f in Call._meta.concrete_fields}
    defaults["action_items"] = "[]"
    call_id, entry_id = first_id, first_entry_id
    entries = []
    with cursor.copy(f"COPY {Call._meta.db_table} ({', '.join(columns)}) FROM STDIN") as copy:
        for n in range(count):
            started = now - dt.timedelta(seconds=rng.randrange(365 * 86400))
            duration = rng.randrange(20, 400)
            service, day = rng.choice(SERVICES), rng.choice(DAYS)
            name = f"{rng.choice(FIRST)} {rng.choice(LAST)}" if rng.random() < 0.6 else ""
            live = n < 3  # a few calls still going
            outcome = "" if live else rng.choice(OUTCOMES)
            row = dict(defaults)
            row.update({
                "id": call_id, "business_id": business_id, "channel": "browser" if rng.random() < 0.03 else "twilio",
                "from_number": rng.choice(numbers), "to_number": "+15550100000", "twilio_call_sid": None,
                "status": "in_progress" if live else ("completed" if rng.random() < 0.97 else "failed"),
                "started_at": now - dt.timedelta(seconds=n) if live else started,
                "answered_at": started, "ended_at": None if live else started + dt.timedelta(seconds=duration),
                "duration_seconds": None if live else duration, "stream_started_at": started,
                "finalized_at": None if live else started + dt.timedelta(seconds=duration),
                "end_reason": "" if live else "caller_hung_up", "outcome": outcome, "model": "gpt-realtime",
                "input_audio_tokens": duration * 10, "output_audio_tokens": duration * 20,
                "cost_usd": Decimal(duration) / Decimal(1000), "caller_name": name,
                "summary": "" if live else f"{name or 'A caller'} asked about a {service} on {day}; "
                                           f"outcome {outcome.replace('_', ' ')}.",
                "reason": "" if live else f"{service.capitalize()} on {day}.",
                "summarized_at": None if live else started + dt.timedelta(seconds=duration + 3),
                "search_vector": None,
            })
            copy.write_row([row[c] for c in columns])
            lines = [rng.choice(AGENT_LINES[:1]), rng.choice(CALLER_LINES), rng.choice(AGENT_LINES[1:]),
                     "Thank you, bye." if rng.random() < 0.998 else f"Do you also have a {RARE_WORD}?"]
            for order, text in enumerate(lines, 1):
                entries.append((entry_id, call_id, order, "agent" if order % 2 else "caller",
                                text.format(service=service, day=day), order * 4000, order * 4000 + 2500, False))
                entry_id += 1
            call_id += 1
    with cursor.copy(f"COPY {TranscriptEntry._meta.db_table} (id, call_id, \"order\", speaker, text, start_ms, "
                     "end_ms, interrupted) FROM STDIN") as copy:
        for entry in entries:
            copy.write_row(entry)
    return call_id, entry_id


def seed_detail_call(*, business, rows: int, started_at: dt.datetime):
    """One call with rows/2 turns and rows/2 events (latencies, tool calls, supervisor steps, a few others)."""
    from calls.models import Appointment, Call, CallEvent, Customer, Message, TranscriptEntry
    from calls.services.search_document import call_search_refresh

    call = Call.objects.create(business=business, from_number="+15550109999", to_number="+15550100000",
                               status="completed", started_at=started_at, duration_seconds=rows * 3,
                               outcome="booked", summary="A long call.", caller_name="Long Caller",
                               cost_usd=Decimal("0.5"), supervisor_cost_usd=Decimal("0.1"),
                               summary_cost_usd=Decimal("0.01"), finalized_at=started_at)
    turns = rows // 2
    TranscriptEntry.objects.bulk_create([
        TranscriptEntry(call=call, order=n, speaker="agent" if n % 2 else "caller",
                        text=f"Turn {n}: " + CALLER_LINES[n % len(CALLER_LINES)].format(service="cleaning",
                                                                                         day="Friday"),
                        start_ms=n * 3000, end_ms=n * 3000 + 2000) for n in range(1, turns + 1)])
    kinds = ["latency", "latency", "tool_call", "supervisor", "supervisor", "barge_in", "usage"]
    events = []
    for n in range(1, rows - turns + 1):
        kind = kinds[n % len(kinds)]
        payload = {"ms": 600 + n % 400} if kind == "latency" else (
            {"name": "ask_supervisor", "arguments": {"request": f"request {n}"}, "result": "sent to the supervisor"}
            if kind == "tool_call" else {"step": "tool", "name": "check_availability",
                                         "arguments": {"day": "2026-01-16"}, "result": {"slots": ["10:00", "10:30"]}}
            if kind == "supervisor" else {"item_id": f"i{n}", "heard_ms": 800, "sent_ms": 2000}
            if kind == "barge_in" else {"tokens": n})
        events.append(CallEvent(call=call, order=n, offset_ms=n * 3000 + 5, kind=kind, payload=payload))
    CallEvent.objects.bulk_create(events)
    customer, _ = Customer.objects.get_or_create(business=business, phone="+15550109999",
                                                 defaults={"name": "Long Caller"})
    Appointment.objects.create(business=business, customer=customer, service_name="Cleaning",
                               starts_at=started_at + dt.timedelta(days=3),
                               ends_at=started_at + dt.timedelta(days=3, minutes=30), created_by_call=call)
    Message.objects.create(business=business, customer=customer, call=call, name="Long Caller",
                           callback_number="+15550109999", body="Call me back.")
    call_search_refresh(call_id=call.id)
    return call


def build_search_documents(cursor, first_id: int, last_id: int, batch: int = 20000) -> None:
    """The product's per-call statement, run over id ranges instead of one id."""
    from calls.services.search_document import SEARCH_REFRESH_SQL

    assert SEARCH_REFRESH_SQL.count("c.id = %s") == 1
    sql = SEARCH_REFRESH_SQL.replace("c.id = %s", "c.id BETWEEN %s AND %s")
    for start in range(first_id, last_id + 1, batch):
        cursor.execute(sql, [start, min(start + batch - 1, last_id)])


# --- timing -------------------------------------------------------------------------------------------------------

def time_page(client, url: str, params: dict, iterations: int, warmup: int = 10) -> tuple[list[float], int, int]:
    """Server time per request in ms (iterations), then one more request with its queries captured."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    for _ in range(warmup):
        response = client.get(url, params)
        assert response.status_code == 200, (url, response.status_code)
        if response.streaming:
            b"".join(response.streaming_content)
    times = []
    for _ in range(iterations):
        t0 = time.perf_counter()
        response = client.get(url, params)
        if response.streaming:
            b"".join(response.streaming_content)
        times.append((time.perf_counter() - t0) * 1000)
    with CaptureQueriesContext(connection) as queries:
        response = client.get(url, params)
        body = b"".join(response.streaming_content) if response.streaming else response.content
    return times, len(queries), len(body)


def query_count(client, url: str, params: dict) -> int:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as queries:
        response = client.get(url, params)
        assert response.status_code == 200
    return len(queries)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=100_000, help="calls of the big business")
    parser.add_argument("--iterations", type=int, default=200, help="timed requests per page")
    parser.add_argument("--db", default="receptionist_bench_dashboard", help="database to drop and re-create")
    parser.add_argument("--out", help="markdown file whose section to write/replace, e.g. docs/benchmarks.md")
    args = parser.parse_args(argv)
    command = "`.venv/bin/python bench/dashboard.py " + " ".join(argv) + "`"

    sys.path.insert(0, str(REPO))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "PG"))}
    env.update({
        "DJANGO_SETTINGS_MODULE": "receptionist.settings", "DEBUG": "false",
        "SECRET_KEY": "bench-" + secrets.token_urlsafe(48),
        "DATABASE_URL": f"postgres://postgres:postgres@127.0.0.1:5432/{args.db}",
        "PUBLIC_BASE_URL": "http://127.0.0.1:8000", "ALLOWED_HOSTS": "testserver,127.0.0.1,localhost",
        "STATIC_MANIFEST": "false", "LOG_LEVEL": "WARNING",
    })
    env.pop("REDIS_URL", None)  # in-memory channel layer: publishing a call change must not need Redis here
    t_start = time.monotonic()
    recreate_database(args.db, env)
    os.environ.update(env)
    import django

    django.setup()
    from django.db import connection
    from django.test import Client
    from django.utils import timezone

    from accounts.models import Business, Membership, User

    now = timezone.now()
    rng = random.Random(6)

    def business(name: str) -> Business:
        b = Business.objects.create(name=name, phone_number=f"+1555010{Business.objects.count():04d}",
                                    time_zone="America/New_York", onboarded_at=now)
        user = User.objects.create_user(email=f"owner@{name.lower().replace(' ', '-')}.example", password="x")
        Membership.objects.create(user=user, business=b, role=Membership.Role.OWNER)
        return b

    big = business("Big Dental")
    others = [business(f"Other {n}") for n in range(4)]
    small = business("Small Dental")
    numbers = [f"+1{rng.randrange(201, 989)}555{rng.randrange(10000):04d}" for _ in range(20000)]
    t_seed = time.monotonic()
    with connection.cursor() as wrapper:
        cursor = wrapper.cursor  # psycopg's own cursor, for COPY
        next_call, next_entry = seed_calls(cursor, business_id=big.id, count=args.calls, first_id=1, first_entry_id=1,
                                           now=now, rng=rng, numbers=numbers)
        for other in others:
            next_call, next_entry = seed_calls(cursor, business_id=other.id, count=args.calls // 40,
                                               first_id=next_call, first_entry_id=next_entry, now=now, rng=rng,
                                               numbers=numbers)
        next_call, next_entry = seed_calls(cursor, business_id=small.id, count=200, first_id=next_call,
                                           first_entry_id=next_entry, now=now, rng=rng, numbers=numbers)
        cursor.execute("SELECT setval(pg_get_serial_sequence('calls_call', 'id'), %s)", [next_call])
        cursor.execute("SELECT setval(pg_get_serial_sequence('calls_transcriptentry', 'id'), %s)", [next_entry])
    copy_s = time.monotonic() - t_seed
    t_docs = time.monotonic()
    with connection.cursor() as cursor:
        build_search_documents(cursor, 1, next_call - 1)
    docs_s = time.monotonic() - t_docs
    detail_call = seed_detail_call(business=big, rows=500, started_at=now - dt.timedelta(days=400))
    small_detail = seed_detail_call(business=small, rows=10, started_at=now - dt.timedelta(days=400))
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE")
        cursor.execute("SELECT count(*) FROM calls_call")
        total_calls = cursor.fetchone()[0]
        cursor.execute("SELECT count(*) FROM calls_transcriptentry")
        total_entries = cursor.fetchone()[0]
        cursor.execute("SELECT pg_size_pretty(pg_total_relation_size('calls_call')), "
                       "pg_size_pretty(pg_relation_size('call_search_vector'))")
        call_size, gin_size = cursor.fetchone()
    seed_s = time.monotonic() - t_start
    print(f"seeded {total_calls:,} calls and {total_entries:,} transcript entries in {seed_s:.0f} s "
          f"(COPY {copy_s:.0f} s, search documents {docs_s:.0f} s); calls table {call_size}, GIN index {gin_size}",
          flush=True)

    client = Client()
    client.force_login(User.objects.get(memberships__business=big))
    small_client = Client()
    small_client.force_login(User.objects.get(memberships__business=small))

    from calls.models import Call
    from calls.selectors.search import call_cursor

    deep = Call.objects.filter(business=big).order_by("-started_at", "-id")[args.calls // 2]
    local_today = now.astimezone(big.tzinfo).date()
    frequent_name = Call.objects.filter(business=big).exclude(caller_name="").values_list(
        "caller_name", flat=True).first().split()[-1]
    number = Call.objects.filter(business=big, channel="twilio").values_list("from_number", flat=True).first()
    list_url, detail_url = "/dashboard/calls/", f"/dashboard/calls/{detail_call.id}/"
    scenarios = [
        ("list, first page", list_url, {}),
        (f"list, page at row {args.calls // 2:,} (keyset)", list_url, {"after": call_cursor(deep)}),
        ("list, outcome=booked + last 90 days", list_url,
         {"outcome": "booked", "date_from": (local_today - dt.timedelta(days=90)).isoformat(),
          "date_to": local_today.isoformat()}),
        ("search: a common word (\"cleaning\")", list_url, {"q": "cleaning"}),
        (f"search: a rare word (\"{RARE_WORD}\", ~1 call in 500)", list_url, {"q": RARE_WORD}),
        (f"search: a surname (\"{frequent_name}\")", list_url, {"q": frequent_name}),
        (f"search: part of a number (\"{number[-7:]}\")", list_url, {"q": number[-7:]}),
        ("search + filter (\"whitening\", outcome=booked)", list_url, {"q": "whitening", "outcome": "booked"}),
        ("call detail, 500 timeline rows", detail_url, {}),
    ]
    results = []
    for name, url, params in scenarios:
        times, queries, size = time_page(client, url, params, args.iterations)
        results.append((name, times, queries, size))
        print(f"{name:55s} p50 {percentile(times, 50):6.1f} ms  p95 {percentile(times, 95):6.1f} ms  "
              f"{queries} queries  {size / 1024:.0f} KiB", flush=True)
    # The other pages, for the record (the issue sets no goal for them): fewer requests, they are heavier.
    from django.db.models import Count

    from calls.models import Customer

    Customer.objects.bulk_create([Customer(business=big, phone=n, name=f"Customer {i}")
                                  for i, n in enumerate(sorted(set(numbers)))], batch_size=5000)
    busiest = Call.objects.filter(business=big, channel="twilio").values("from_number").annotate(
        n=Count("id")).order_by("-n").first()
    customer = Customer.objects.get(business=big, phone=busiest["from_number"])
    other_scenarios = [
        ("home (figures, latest calls, messages, appointments)", "/dashboard/", {}),
        ("analytics, last 30 days", "/dashboard/analytics/", {"period": "30"}),
        ("analytics, last 365 days (every call)", "/dashboard/analytics/",
         {"date_from": (local_today - dt.timedelta(days=364)).isoformat(), "date_to": local_today.isoformat()}),
        ("customers list", "/dashboard/customers/", {}),
        (f"customer detail ({busiest['n']} calls from the number)", f"/dashboard/customers/{customer.id}/", {}),
    ]
    other_iterations = max(20, args.iterations // 4)
    other_results = []
    for name, url, params in other_scenarios:
        times, queries, size = time_page(client, url, params, other_iterations, warmup=3)
        other_results.append((name, times, queries))
        print(f"{name:55s} p50 {percentile(times, 50):6.1f} ms  p95 {percentile(times, 95):6.1f} ms  "
              f"{queries} queries  {size / 1024:.0f} KiB", flush=True)
    # The same pages for the small business (200 calls, a 10-row detail): the counts must not change.
    counted = [(scenarios[0], {}), (scenarios[2], scenarios[2][2]), (scenarios[3], {"q": "cleaning"}),
               (scenarios[-1], None)]
    big_counts = {name: queries for name, _, queries, _ in results}
    count_rows = []
    for (name, url, _), params in counted:
        small_queries = (query_count(small_client, f"/dashboard/calls/{small_detail.id}/", {}) if params is None
                         else query_count(small_client, url, params))
        count_rows.append(f"| {name} | {big_counts[name]} | {small_queries} |")
        print(f"queries, {name}: {big_counts[name]} at {args.calls:,} calls, {small_queries} at 200", flush=True)

    def goal(name: str, p50: float) -> str:
        limit = 80 if name.startswith("call detail") else 50
        return f"{'yes' if p50 < limit else '**no**'} (< {limit} ms)"

    rows = [f"| {name} | {percentile(t, 50):.1f} | {percentile(t, 95):.1f} | {statistics.mean(t):.1f} | "
            f"{q} | {goal(name, percentile(t, 50))} |" for name, t, q, _ in results]
    section = "\n".join([
        SECTION, "",
        f"Server time of the dashboard's calls pages with {total_calls:,} calls in the database "
        f"({args.calls:,} for the business measured, {args.calls // 40:,} for each of four others, 200 for a small "
        f"one) and {total_entries:,} transcript entries. Each figure is {args.iterations} requests through Django's "
        "test client in one process (middleware, session and auth, the view and its template; no network), "
        "signed in as the owner, DEBUG off, PostgreSQL 15 on the same machine. Goal: list and search p50 < 50 ms, "
        "detail p50 < 80 ms, query counts flat in the number of calls.", "",
        "| page | p50 ms | p95 ms | mean ms | queries | goal met |", "| --- | --- | --- | --- | --- | --- |",
        *rows, "",
        "Query counts are flat: the same pages for a business with 200 calls (and a detail with 10 timeline rows).",
        "Every page runs session, user and membership, then its own: the list 1, the detail 6 (call, turns, events, "
        "appointments, messages, customer).", "",
        f"| page | queries at {args.calls:,} calls | queries at 200 calls |", "| --- | --- | --- |", *count_rows, "",
        f"The other dashboard pages over the same data, {other_iterations} requests each (no goal set for them; the "
        f"customers table holds {Customer.objects.filter(business=big).count():,} customers):", "",
        "| page | p50 ms | p95 ms | queries |", "| --- | --- | --- | --- |",
        *[f"| {name} | {percentile(t, 50):.1f} | {percentile(t, 95):.1f} | {q} |" for name, t, q in other_results],
        "",
        f"- Seeding (COPY, then the product's search-document statement over every call, then VACUUM ANALYZE) took "
        f"{seed_s:.0f} s; the calls table is {call_size} with a {gin_size} GIN index on the search documents.",
        "- The list pages by keyset on (started_at, id) over the (business, started_at, id) index and never counts "
        "the rows, so a page deep in the list costs what the first does. Search is a prefix tsquery (every word must "
        "match) on the GIN-indexed `search_vector`, newest first.",
        f"- Machine: {machine()}; "
        f"run {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC. Other work on the machine at the same time "
        "shows up in p95.",
        f"- Command: {command}",
    ])
    print()
    print(section)
    return write_section(args.out, SECTION, section) if args.out else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
