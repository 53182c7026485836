"""The telemetry routes: ingest, runs, agents."""
