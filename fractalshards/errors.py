"""The error types users see: bad input (ConfigError) and bad stored data (ShardIntegrityError)."""

from __future__ import annotations

__all__ = ["ConfigError", "ShardIntegrityError", "TransferError", "check_choice", "check_int"]


class ConfigError(ValueError):
    """Bad input: the message names the field, the bad value and the fix, on one line."""


def check_choice(field: str, value: object, allowed: tuple) -> None:
    """Raise :class:`ConfigError` unless ``value`` is one of ``allowed``."""
    if value not in allowed:
        raise ConfigError(f"{field}: {value!r} is not known; use one of {', '.join(map(str, allowed))}")


def check_int(field: str, value: object, minimum: int, hint: str = "") -> None:
    """Raise :class:`ConfigError` unless ``value`` is an integer >= ``minimum``."""
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ConfigError(f"{field}: {value!r} is not valid; use an integer >= {minimum}{hint}")


class ShardIntegrityError(IOError):
    """A shard (or a sample in it) is truncated, altered or unsafe; the message names it."""


class TransferError(IOError):
    """A shard could not be read from (or written to) a store after bounded retries; the message names it."""
