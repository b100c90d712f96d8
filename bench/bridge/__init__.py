"""The media bridge benchmark (bench/bridge_latency.py) by concern: `config` (settings and limits), `wire` (the
tagged frames and the bench's own lean WebSocket and HTTP clients), `calls` (one simulated call), `servers` (the
database, the environment and starting a server), `relay` (the bare relay and the fallback echo stand-in),
`scenarios` (steady, cold and burst runs and their sampling) and `report` (tables, goals, the docs section)."""
