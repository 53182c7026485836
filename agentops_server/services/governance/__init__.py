"""Governing agents: the org's policies (versions, table tests, dry runs, what SDKs enforce)."""
