"""Fixtures every connector test module may use."""

from tests.connectors.openapi.check import documented_requests

__all__ = ["documented_requests"]  # requests checked against the vendors' published documents
