"""Progress where a person looks: a tqdm bar on a terminal, one-line log records elsewhere.

A bar's carriage-return updates are right on a terminal and wrong in a file: a Ray job's log, a CI
log or ``nohup`` output fills with partial lines. :func:`bar` gives tqdm's bar when standard error
is a terminal, and otherwise the same object whose updates are log records (logger
``fractalshards.progress``, one line each, at most one every :data:`LOG_INTERVAL` seconds, and one
when it closes). :func:`default_progress` is what ``progress=None`` means in the Python API: on in
an interactive session (a REPL, IPython, Jupyter), off in scripts.
"""

from __future__ import annotations

import io
import logging
import os
import sys
from collections.abc import Iterable
from typing import Any

from tqdm import tqdm

__all__ = ["bar", "default_progress", "LOG_INTERVAL", "LogBar"]

log = logging.getLogger("fractalshards.progress")

#: Seconds between two log records of one bar (``FRACTALSHARDS_PROGRESS_INTERVAL`` changes it).
LOG_INTERVAL = float(os.environ.get("FRACTALSHARDS_PROGRESS_INTERVAL", "10"))


class LogBar(tqdm):
    """A tqdm bar whose updates are log records: one line each, no carriage return, at most one
    every ``mininterval`` seconds (:data:`LOG_INTERVAL` by default), and the final state on close."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("mininterval", LOG_INTERVAL)
        kwargs["file"] = io.StringIO()  # tqdm's own writes go nowhere: display() logs instead
        kwargs.setdefault("ncols", 100)
        self._last_n: float | None = None
        super().__init__(*args, **kwargs)

    def display(self, msg: str | None = None, pos: int | None = None) -> bool:
        """Log the bar's state as one line (tqdm calls this where it would redraw), once per count reached."""
        if self.n == self._last_n:
            return True
        self._last_n = self.n
        text = (msg if msg is not None else self.format_meter(**self.format_dict)).strip().replace("\r", "")
        if text:
            if log.isEnabledFor(logging.INFO) and log.hasHandlers():
                log.info("%s", text)
            else:  # nobody set up logging (a plain script): the line goes where a bar would have
                print(text, file=sys.stderr, flush=True)
        return True


def _interactive() -> bool:
    return hasattr(sys, "ps1") or bool(getattr(sys.flags, "interactive", 0)) or "ipykernel" in sys.modules


def default_progress(progress: bool | None) -> bool:
    """``progress`` as given, or for ``None``: on in an interactive session, off otherwise."""
    return _interactive() if progress is None else bool(progress)


def bar(iterable: Iterable | None = None, *, enabled: bool = True, **kwargs: Any) -> tqdm:
    """A progress bar: tqdm's on a terminal, :class:`LogBar` when standard error is not one (a file, a
    pipe, a Ray job's log); ``enabled=False`` shows nothing. Takes tqdm's arguments."""
    if not enabled:
        return tqdm(iterable, disable=True, **kwargs)
    stream = sys.stderr
    on_terminal = bool(getattr(stream, "isatty", lambda: False)())
    # A notebook's output is no terminal but draws tqdm's bar as it should.
    return tqdm(iterable, **kwargs) if on_terminal or "ipykernel" in sys.modules else LogBar(iterable, **kwargs)
