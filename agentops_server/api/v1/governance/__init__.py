"""The governance routes: the agent registry, controls, policies."""
