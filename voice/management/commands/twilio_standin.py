"""``python manage.py twilio_standin``: run the local Twilio REST stand-in (see voice/offline/twilio/).

`scripts/run.sh` starts it when TWILIO_ACCOUNT_SID is unset, so a newcomer can get a (fictional) phone
number in the portal with no Twilio account.
"""

from __future__ import annotations

import signal
import threading

from django.core.management.base import BaseCommand, CommandError

from voice.offline.twilio import DEFAULT_ACCOUNT_SID, DEFAULT_AUTH_TOKEN, TwilioStandin


class Command(BaseCommand):
    requires_system_checks: list[str] = []  # a stand-in needs none of the project's checks; start fast
    help = ("Run the local Twilio REST stand-in (Calls, AvailablePhoneNumbers, IncomingPhoneNumbers) with an "
            "inventory of fictional numbers, until SIGINT/SIGTERM. Point TWILIO_API_BASE_URL at it.")

    def add_arguments(self, parser):
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8766)
        parser.add_argument("--account-sid", default=DEFAULT_ACCOUNT_SID,
                            help="the account SID clients must use (default: a placeholder)")
        parser.add_argument("--auth-token", default=DEFAULT_AUTH_TOKEN,
                            help="the auth token clients must use (default: a placeholder, not a secret)")
        parser.add_argument("--state", default="",
                            help="JSON file keeping the numbers (bought, released) across restarts")
        parser.add_argument("--per-area", type=int, default=20,
                            help="fictional numbers for sale per area code (+1 NPA 555-01xx)")

    def handle(self, *args, host: str, port: int, account_sid: str, auth_token: str, state: str, per_area: int,
               **options):
        standin = TwilioStandin(account_sid, auth_token, host=host, port=port)
        if state:
            try:
                standin.load_state(state)
            except (OSError, ValueError) as exc:
                raise CommandError(f"Cannot read the state file {state}: {exc}") from exc
        if not standin.available and not standin.incoming_numbers:
            standin.seed_fictional_inventory(per_area=per_area)
        try:
            base_url = standin.start_in_thread()
        except OSError as exc:
            raise CommandError(f"Cannot listen on {host}:{port}: {exc}") from exc
        stop = threading.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: stop.set())
        self.stdout.write(f"Twilio stand-in listening on {base_url} ({len(standin.available)} fictional numbers "
                          f"for sale, {len(standin.incoming_numbers)} in the account)\n"
                          f"  TWILIO_API_BASE_URL={base_url} TWILIO_ACCOUNT_SID={account_sid}")
        self.stdout.flush()
        try:
            while not stop.wait(0.5):
                pass
        finally:
            standin.stop()
