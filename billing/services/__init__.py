"""Writes for billing, one module per concern (import the module you need; nothing is re-exported here):

- `account`: a business's billing account (its free trial starts lazily) and which subscription statuses allow
  calls;
- `gate`: whether a call is answered (`can_take_call`, `call_gate` and its owner email, `browser_call_gate`) and how
  long a live call may run (`call_allowance`);
- `usage`: what a finished call counts and bills, its usage record, the report to Polar and the sweep;
- `subscription`: the subscription's state from Polar's webhooks, and the checkout and portal that change it.
"""
