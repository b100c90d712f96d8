"""``python manage.py realtime_standin``: run the local OpenAI Realtime stand-in (see voice/offline/realtime/)."""

import asyncio

from django.core.management.base import BaseCommand, CommandError

from voice.offline.realtime import build_arg_parser, serve_until_signalled, standin_from_options


class Command(BaseCommand):
    help = (
        "Run the local OpenAI Realtime stand-in (GA protocol WebSocket at /v1/realtime plus /v1/models and "
        "/standin/sessions) until SIGINT/SIGTERM. Point OPENAI_REALTIME_URL / OPENAI_BASE_URL at it."
    )

    def add_arguments(self, parser):
        build_arg_parser(parser)

    def handle(self, *args, **options):
        try:
            standin = standin_from_options(options)
        except (OSError, ValueError) as exc:
            raise CommandError(f"Cannot load the script: {exc}") from exc

        def out(line: str) -> None:
            self.stdout.write(line)
            self.stdout.flush()

        try:
            asyncio.run(serve_until_signalled(standin, out=out))
        except OSError as exc:
            raise CommandError(f"Cannot listen on {options['host']}:{options['port']}: {exc}") from exc
