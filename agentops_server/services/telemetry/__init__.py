"""What agents report: ingesting runs and spans, reading them back."""
