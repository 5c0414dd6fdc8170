"""Reading shards back with the ``webdataset`` library's own pipeline stages.

webdataset 1.x opens URLs with its own ``gopen`` (no ``s3://``); here shards are
opened through the dataset's fsspec :class:`~fractalshards.storage.Store`, and
webdataset's ``tar_file_expander`` and ``group_by_keys`` do the tar parsing.
"""

from __future__ import annotations

from typing import Iterable, Iterator

from webdataset import tariterators

from .storage import Store

__all__ = ["open_shards", "iter_shard_samples"]


def open_shards(store: Store, names: Iterable[str]) -> Iterator[dict]:
    """Stage: shard names -> ``{"url", "stream"}`` dicts, opened through fsspec."""
    for name in names:
        with store.fs.open(store.path(name), "rb") as stream:
            yield {"url": store.url_of(name), "stream": stream}


def iter_shard_samples(store: Store, names: Iterable[str]) -> Iterator[dict]:
    """Samples (``{"__key__", "png", "cls", "json", ...}`` of raw bytes) of the named shards, in order."""
    files = tariterators.tar_file_expander(open_shards(store, names))
    return tariterators.group_by_keys(files)
