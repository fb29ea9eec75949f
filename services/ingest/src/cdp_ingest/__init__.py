"""The CDP ingest service."""
