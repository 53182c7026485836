"""Governing agents: the agent registry and emergency controls."""
