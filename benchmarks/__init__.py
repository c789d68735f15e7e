"""Benchmarks of llmkit: ``python -m benchmarks`` runs them all (see __main__.py)."""
