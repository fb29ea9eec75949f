"""Ingest domain: pure code, no I/O."""
