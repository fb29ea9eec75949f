"""The CDP identity service."""
