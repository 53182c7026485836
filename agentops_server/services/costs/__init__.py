"""Costs: what every LLM call cost, priced at ingest, and the prices it was priced at."""
