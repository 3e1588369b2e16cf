"""Shared test helpers, importable as `support.*` (pyproject: `pythonpath = ["tests"]`)."""
