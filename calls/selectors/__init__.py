"""Reads for calls, one module per what they serve (import the module you need; nothing is re-exported here):

- `local_time`: a business's wall clock, a local day's UTC bounds (the time rules live there), and times as
  people say them ("Monday 7 December at 8 am", in the business's language);
- `availability`: opening hours, services and free slots;
- `faq`: the FAQ entries that answer a question;
- `callers`: who is calling, and what the agent is told about a returning caller;
- `caller_names`: the one name every page, email and webhook gives a call's caller;
- `dashboard`: the home page, appointment calendar and lists, messages, customers;
- `search`: the calls list (filters, full-text search, keyset paging);
- `timeline`: one call's page (timeline, latency percentiles, cost), with `timeline_words` saying each tool call
  in words;
- `export`: the calls list as CSV rows.
"""
