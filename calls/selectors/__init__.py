"""Reads for calls, one module per what they serve (import the module you need; nothing is re-exported here):

- `local_time`: a business's wall clock and a local day's UTC bounds (the time rules live there);
- `availability`: opening hours, services and free slots;
- `faq`: the FAQ entries that answer a question;
- `callers`: who is calling, and what the agent is told about a returning caller;
- `dashboard`: the home page, appointment calendar and lists, messages, customers;
- `search`: the calls list (filters, full-text search, keyset paging);
- `timeline`: one call's page (timeline, latency percentiles, cost);
- `export`: the calls list as CSV rows.
"""
