"""Skylift: over-the-air firmware updates for IoT fleets."""

__version__ = "0.1.0"
