"""Domain rules in plain Python: no web framework, no database imports (a test checks)."""
