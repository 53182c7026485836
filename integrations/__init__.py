"""Framework integrations, one top-level package each (``agentops_openai``...), added by extras."""
