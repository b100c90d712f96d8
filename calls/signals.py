"""What `calls` announces to the apps built on it. `calls` imports none of them (billing depends on calls, not
the other way round), so an app that must act on a call's end connects here, in its AppConfig.ready()."""

from __future__ import annotations

from django.dispatch import Signal

# Sent once per call, after the transaction that finalised it commits (`calls.services.lifecycle.call_finalize`),
# whichever path finalised it: the call session, Twilio's status callback, the reaper. Keyword argument: call_id.
call_finalized = Signal()
