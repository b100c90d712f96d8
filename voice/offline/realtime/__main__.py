"""``python -m voice.offline.realtime``: run the stand-in (flags: ``--help``)."""

from voice.offline.realtime.cli import main

main()
