"""Fault injection, for the tests of retries, resume and interrupted publication.

``FRACTALSHARDS_FAULT`` holds comma-separated ``<point>:<kill|raise>:<marker path>``
items. The first time :func:`fault_point` is reached with a matching point it
creates the marker file (so a retry runs normally) and then kills its own process
(``kill``, like a lost worker or a ``kill -9``) or raises ``RuntimeError``. Unset,
it costs one environment lookup.
"""

from __future__ import annotations

import os
import re

__all__ = ["fault_point"]


def fault_point(point: str) -> None:
    """Fail here once if ``FRACTALSHARDS_FAULT`` names ``point``."""
    spec = os.environ.get("FRACTALSHARDS_FAULT")
    if not spec:
        return
    for item in spec.split(","):
        match = re.fullmatch(r"(.+):(kill|raise):(.+)", item)
        if match is None:
            continue
        name, how, marker = match.groups()
        if name != point or os.path.exists(marker):
            continue
        with open(marker, "w") as fh:
            fh.write(str(os.getpid()))
        if how == "kill":
            os._exit(17)
        raise RuntimeError(f"injected failure at {point}")
