"""Budgets on the hub: definitions (CRUD, the served set), the ledger of spend fed from ingest,
state read at the current window, atomic leases, alerts and auto-pause (see docs/budgets.md)."""
