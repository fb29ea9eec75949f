"""The CDP prediction service."""
