"""The CDP profile service."""
