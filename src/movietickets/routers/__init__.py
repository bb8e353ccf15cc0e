"""HTTP routers: parse, call a service, shape the answer. No rules, no SQL."""
