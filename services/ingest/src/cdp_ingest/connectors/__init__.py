"""Connectors: payloads of other systems (Shopify webhooks, ...) turned into Segment calls.

A connector is pure: it verifies and maps, and hands `domain.calls.Call`s to the entry
point, which submits them through the Pipeline like any other call.
"""
