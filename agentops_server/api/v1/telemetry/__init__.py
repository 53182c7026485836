"""The telemetry routes: ingest, runs."""
