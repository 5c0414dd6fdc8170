"""The one error type users see for bad input."""

from __future__ import annotations

__all__ = ["ConfigError"]


class ConfigError(ValueError):
    """Bad input: the message names the field, the bad value and the fix, on one line."""
