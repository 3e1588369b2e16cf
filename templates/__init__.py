"""Jinja templates rendered by the compiler (package data)."""
