"""The error types users see: bad input (:class:`ConfigError`) and bad stored data
(:class:`ShardIntegrityError`, :class:`StoredDataError`), and checks of names read from storage.

Every message is one line naming the field (or file), the bad value and the fix; errors chain
their cause (``raise ... from exc``), so ``FRACTALSHARDS_DEBUG=1`` shows the backend's error.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Callable
from typing import Any, TypeVar

__all__ = [
    "StoredDataError",
    "LimitError",
    "reads_stored_data",
    "ConfigError",
    "ShardIntegrityError",
    "TransferError",
    "is_int",
    "is_number",
    "check_choice",
    "check_int",
    "is_version_id",
    "check_version",
    "check_file_name",
    "check_dataset_name",
]


class ConfigError(ValueError):
    """Bad input: the message names the field, the bad value and the fix, on one line."""


def check_choice(field: str, value: object, allowed: tuple) -> None:
    """Raise :class:`ConfigError` unless ``value`` is one of ``allowed``."""
    if value not in allowed:
        raise ConfigError(f"{field}: {value!r} is not known; use one of {', '.join(map(str, allowed))}")


def is_int(value: object) -> bool:
    """Whether ``value`` is an integer that is not a bool (JSON's ``true`` is no count)."""
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: object) -> bool:
    """Whether ``value`` is a finite int or float that is not a bool."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def check_int(field: str, value: object, minimum: int, hint: str = "") -> None:
    """Raise :class:`ConfigError` unless ``value`` is an integer >= ``minimum``."""
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ConfigError(f"{field}: {value!r} is not valid; use an integer >= {minimum}{hint}")


class ShardIntegrityError(IOError):
    """A shard (or a sample in it) is truncated, altered or unsafe; the message names it."""


class LimitError(ConfigError):
    """A definition, manifest or state asks for more than :mod:`fractalshards.limits` allows: not bad
    data but a request too large to honour unasked; the message says how to raise the bound."""


class StoredDataError(ShardIntegrityError):
    """Data read from storage (a dataset manifest, a recipe, the publication index, a cache entry) is
    malformed, inconsistent or crafted; the message names the file and the field."""


F = TypeVar("F", bound=Callable[..., Any])


def reads_stored_data(fn: F) -> F:
    """Decorate a reader of stored data: a :class:`ConfigError` raised inside it (by the validators,
    which also check user input) reaches the caller as a :class:`StoredDataError`, same message,
    cause chained."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except (StoredDataError, LimitError):  # a limit is the user's to raise: it stays a ConfigError
            raise
        except ConfigError as exc:
            raise StoredDataError(str(exc)) from exc

    return wrapper  # type: ignore[return-value]


class TransferError(IOError):
    """A shard could not be read from (or written to) a store after bounded retries; the message names it."""


# -- names read from storage (untrusted) ---------------------------------------------------------
_VERSION_ID = re.compile(r"^[0-9a-f]{16}$")
_FILE_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,254}$")


def is_version_id(value: object) -> bool:
    """Whether ``value`` is a version id: 16 lowercase hex digits."""
    return isinstance(value, str) and _VERSION_ID.match(value) is not None


def check_version(value: object, field: str = "version", source: str = "index.json") -> str:
    """``value`` if it is a version id, else a one-line :class:`ConfigError` naming ``source`` and ``field``."""
    if not is_version_id(value):
        raise ConfigError(f"{source}: {field} {value!r} is not a version id (16 lowercase hex digits)")
    return value  # type: ignore[return-value]


def check_file_name(value: object, field: str, source: str) -> str:
    """``value`` if it is a plain file name (letters, digits, ``.``, ``_``, ``-``; no path, ``..``,
    leading dot or control character), else a one-line :class:`ConfigError`."""
    if not isinstance(value, str) or not _FILE_NAME.match(value) or ".." in value:
        raise ConfigError(
            f"{source}: {field} {value!r} is not a plain file name (letters, digits, '.', '_', '-'; "
            "no path, '..' or leading dot); the data is damaged or crafted, do not use it"
        )
    return value


def check_dataset_name(value: object, field: str, source: str, allow_empty: bool = False) -> str:
    """``value`` if it is a dataset name: at most 200 printable characters (and not empty unless allowed)."""
    if not isinstance(value, str) or (not value and not allow_empty) or len(value) > 200 or any(ord(c) < 32 for c in value):
        raise ConfigError(f"{source}: {field} {value!r} is not valid; a dataset name is 1-200 printable characters")
    return value


#: The license a dataset carries unless told otherwise: FractalDB's release (see docs/building.md).
DEFAULT_LICENSE = "CC-BY-4.0"
_SPDX = re.compile(r"^(LicenseRef-[A-Za-z0-9.-]{1,64}|[A-Za-z0-9][A-Za-z0-9.+-]{0,63})$")


def check_license(value: object, field: str = "license", source: str = "license") -> str:
    """``value`` if it looks like an SPDX license id (``CC-BY-4.0``, ``MIT``, ``LicenseRef-...``)."""
    if not isinstance(value, str) or not _SPDX.match(value):
        raise ConfigError(
            f"{source}: {field} {value!r} is not an SPDX license id; use one such as CC-BY-4.0, MIT "
            "or LicenseRef-<name> (https://spdx.org/licenses/)"
        )
    return value
