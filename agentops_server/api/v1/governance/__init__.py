"""The governance routes: policies."""
