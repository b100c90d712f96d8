"""A business's own tools over MCP (Model Context Protocol, Streamable HTTP).

`secrets` encrypts a server's token at rest; `client` talks to a server through the official SDK behind the
outbound address guard; `tools` turns the cached tool list into the supervisor's function schemas and runs one
call. The writes (connect, refresh, toggle, remove) are in `calls.services.mcp_servers`, the reads in
`calls.selectors.mcp_tools`. Nothing here is on the audio path: the tool list is read from the database (kept
fresh by a refresh on save, on demand and on celery beat), never from the server during a call's steps.
"""
