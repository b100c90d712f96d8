"""The supervisor hand-off benchmark (bench/supervisor_dispatch.py) by concern: `config`, `control` (the empty
control task), `setup` (database, Redis, Django, worker), `handoffs` (the timed hand-offs, as the session makes them,
and the embedded-mode child), `pieces` (in-process measurements of the task's parts) and `report`."""
