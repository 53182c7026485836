"""LangChain integration for AgentOps (see docs/integrations.md)."""
