"""Place a simulated Twilio call against a running server and print the JSON report.

    python manage.py simulate_call --base-url http://127.0.0.1:8000 --to +14155550100
    python manage.py simulate_call --base-url http://127.0.0.1:8000 --public-url https://rx.example.com \\
        --to +14155550100 --utterances 3 --utterance-ms 1200 --barge-in --status-callback

Exit code 1 when the call failed: refused TwiML, socket closed abnormally, protocol errors.
"""

from __future__ import annotations

import json
import sys

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from voice.offline.simulator import SimulatedCallConfig, simulate_call


def _dtmf(value: str) -> tuple[int, str]:
    ms, _, digit = value.partition(":")
    if not ms.isdigit() or len(digit) != 1 or digit not in "0123456789*#":
        raise ValueError(value)
    return int(ms), digit


class Command(BaseCommand):
    help = "Play Twilio against a running server: signed webhook, Media Stream, caller audio; prints a JSON report."

    def add_arguments(self, parser):
        parser.add_argument("--base-url", required=True, help="where to connect, e.g. http://127.0.0.1:8000")
        parser.add_argument("--public-url", help="the server's PUBLIC_BASE_URL, used to sign (default: --base-url)")
        parser.add_argument("--to", required=True, dest="to_number", help="the business's number, E.164")
        parser.add_argument("--from", dest="from_number", default="+14155550123", help="caller number, E.164")
        parser.add_argument("--auth-token", help="default: settings.TWILIO_AUTH_TOKEN")
        parser.add_argument("--account-sid", help="default: settings.TWILIO_ACCOUNT_SID or a fake AC…")
        parser.add_argument("--call-sid", help="default: a random CA…")
        audio = parser.add_mutually_exclusive_group()
        audio.add_argument("--wav", action="append", help="caller utterance from a WAV file (repeat for more)")
        audio.add_argument("--utterances", type=int, default=2, help="synthetic utterances (default 2)")
        parser.add_argument("--utterance-ms", type=int, default=1500, help="synthetic utterance length")
        parser.add_argument("--wait-for-agent-ms", type=int, default=700, help="agent silence that ends its turn")
        parser.add_argument("--reply-timeout", type=float, default=10.0, help="seconds to wait for a reply")
        parser.add_argument("--no-greeting", action="store_true", help="talk first, don't wait for a greeting")
        parser.add_argument("--barge-in", action="store_true", help="interrupt the agent's replies")
        parser.add_argument("--barge-in-delay-ms", type=int, default=450)
        parser.add_argument("--dtmf", action="append", type=_dtmf, default=[], metavar="MS:DIGIT")
        parser.add_argument("--max-seconds", type=float, default=60.0)
        parser.add_argument("--hang-up-after", type=float, help="fixed call length in seconds")
        parser.add_argument("--status-callback", action="store_true", help="POST the signed completed status")
        parser.add_argument("--record", help="write the agent audio that was played to this WAV file")

    def handle(self, *args, **options):
        auth_token = options["auth_token"] or getattr(settings, "TWILIO_AUTH_TOKEN", "")
        if not auth_token:
            raise CommandError("No auth token: pass --auth-token or set TWILIO_AUTH_TOKEN.")
        account_sid = options["account_sid"] or getattr(settings, "TWILIO_ACCOUNT_SID", "") or "AC" + "0" * 32
        config = SimulatedCallConfig(
            base_url=options["base_url"],
            public_url=options["public_url"],
            auth_token=auth_token,
            account_sid=account_sid,
            to_number=options["to_number"],
            from_number=options["from_number"],
            call_sid=options["call_sid"],
            wav_path=options["wav"],
            utterances=options["utterances"],
            utterance_ms=options["utterance_ms"],
            wait_for_agent_ms=options["wait_for_agent_ms"],
            reply_timeout_s=options["reply_timeout"],
            wait_for_greeting=not options["no_greeting"],
            barge_in=options["barge_in"],
            barge_in_delay_ms=options["barge_in_delay_ms"],
            dtmf=options["dtmf"],
            max_duration_s=options["max_seconds"],
            hang_up_after_s=options["hang_up_after"],
            send_status_callback=options["status_callback"],
            record_agent_audio_path=options["record"],
        )
        report = simulate_call(config)
        self.stdout.write(json.dumps(report.to_dict(), indent=2))
        if not report.ok:
            self.stderr.write("call failed: " + "; ".join(report.failures))
            sys.exit(1)
