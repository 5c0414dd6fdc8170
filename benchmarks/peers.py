"""What the loader benchmarks share: a counting S3 server and the peers' writers and datasets.

``benchmarks/stream.py`` (loaders alone) and ``benchmarks/pipeline.py`` (the whole input path)
import it; the peers come from the ``bench`` extra (``make bench-install``).
"""

from __future__ import annotations

import multiprocessing
import socket
import threading
from collections.abc import Callable, Iterable

#: Bytes and GET requests the in-process server has sent (``start_s3``).
SENT = {"bytes": 0, "gets": 0}
_LOCK = threading.Lock()


def _counting_server(host: str, port: int, count: Callable[[int], None], ready: Callable[[], None]):
    from moto.server import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
    from werkzeug.serving import make_server

    app = DomainDispatcherApplication(create_backend_app)

    def counting(environ, start_response):
        body = app(environ, start_response)
        if environ["REQUEST_METHOD"] == "GET":
            chunks = list(body)
            count(sum(len(c) for c in chunks))
            return chunks
        return body

    server = make_server(host, port, counting, True, request_handler=MotoRequestHandler)
    ready()
    return server


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_s3():
    """A moto S3 server on 127.0.0.1 in a thread of this process, counting what it sends into ``SENT``.
    Returns ``(server, endpoint)``; ``server.stop()`` ends it."""
    from moto.server import ThreadedMotoServer

    def count(n: int) -> None:
        with _LOCK:
            SENT["gets"] += 1
            SENT["bytes"] += n

    class Counting(ThreadedMotoServer):
        def _server_entry(self) -> None:
            self._server = _counting_server(self._ip_address, self._port, count, self._server_ready_event.set)
            self._server.serve_forever()

    port = _free_port()
    server = Counting(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    return server, f"http://127.0.0.1:{port}"


class S3Process:
    """A moto S3 server on 127.0.0.1 in a process of its own (so that it does not share the
    measured process's interpreter lock), counting the bytes it sends. ``stop()`` ends it by pid."""

    def __init__(self) -> None:
        context = multiprocessing.get_context("fork")
        self.port = _free_port()
        self._sent = context.Value("q", 0)
        ready = context.Event()
        self.process = context.Process(target=self._serve, args=(self.port, self._sent, ready), daemon=True)
        self.process.start()
        if not ready.wait(30):
            self.stop()
            raise RuntimeError("the S3 server did not start")
        self.endpoint = f"http://127.0.0.1:{self.port}"

    @staticmethod
    def _serve(port: int, sent, ready) -> None:
        import logging

        logging.getLogger("werkzeug").setLevel(logging.ERROR)

        def count(n: int) -> None:
            with sent.get_lock():
                sent.value += n

        _counting_server("127.0.0.1", port, count, ready.set).serve_forever()

    def cpu_seconds(self) -> float:
        """CPU seconds the server process has used so far."""
        import psutil

        return sum(psutil.Process(self.process.pid).cpu_times()[:2])

    @property
    def sent(self) -> int:
        """Bytes sent in answers to GETs so far."""
        return int(self._sent.value)

    def stop(self) -> None:
        """End the server process (by its pid) and wait for it."""
        if self.process.is_alive():
            self.process.kill()
        self.process.join(10)


# -- the peers' formats: the same PNG bytes and labels ---------------------------------------


def _lit_item(item):
    return {"png": item[0], "cls": item[1]}


def litdata_write(samples: Iterable[tuple[bytes, int]], out: str) -> None:
    """``(png, label)`` pairs as a LitData dataset (chunks of 16 MB)."""
    import litdata

    litdata.optimize(fn=_lit_item, inputs=list(samples), output_dir=out, chunk_bytes="16MB", num_workers=1)


def mds_write(samples: Iterable[tuple[bytes, int]], out: str) -> None:
    """``(png, label)`` pairs as a Mosaic Streaming MDS dataset (shards of 16 MB)."""
    from streaming import MDSWriter

    with MDSWriter(out=out, columns={"png": "bytes", "cls": "int"}, size_limit="16mb") as writer:
        for png, label in samples:
            writer.write({"png": png, "cls": label})


def _module_class(name: str, base: type) -> type:
    # A peer dataset whose items are sample_fn(png, label), made once and kept at module level
    # (so that workers, forked or spawned, find it by name).
    if name not in globals():

        def __getitem__(self, index):
            item = base.__getitem__(self, index)
            return self.sample_fn(item["png"], int(item["cls"]))

        cls = type(name, (base,), {"__getitem__": __getitem__, "__module__": __name__})
        globals()[name] = cls
    return globals()[name]


def litdata_dataset(url: str, sample_fn: Callable, options: dict | None = None, cache: str | None = None):
    """A LitData ``StreamingDataset`` of ``url`` whose items are ``sample_fn(png, label)``."""
    import litdata
    from litdata.streaming import downloader

    # LitData's obstore path refuses plain-http endpoints (the loopback server); its boto3 path takes them.
    downloader._OBSTORE_AVAILABLE = False

    LitDecoded = _module_class("LitDecoded", litdata.StreamingDataset)
    kwargs: dict = {"shuffle": True, "seed": 0}
    if options:
        kwargs["storage_options"] = {
            "endpoint_url": options["endpoint_url"],
            "aws_access_key_id": options["key"],
            "aws_secret_access_key": options["secret"],
        }
    if cache:
        kwargs["cache_dir"] = cache
    dataset = LitDecoded(url, **kwargs)
    dataset.sample_fn = sample_fn
    return dataset


def mosaic_dataset(remote: str | None, local: str, sample_fn: Callable, batch_size: int):
    """A Mosaic Streaming ``StreamingDataset`` (``remote`` cached in ``local``, or ``local`` alone)
    whose items are ``sample_fn(png, label)``."""
    from streaming import StreamingDataset
    from streaming.base.util import clean_stale_shared_memory

    MosaicDecoded = _module_class("MosaicDecoded", StreamingDataset)
    clean_stale_shared_memory()
    dataset = MosaicDecoded(remote=remote, local=local, shuffle=True, shuffle_seed=0, batch_size=batch_size)
    dataset.sample_fn = sample_fn
    return dataset


def mosaic_mixture(streams: list[tuple[str | None, str]], proportions: list[float], sample_fn: Callable, batch_size: int):
    """A Mosaic Streaming ``StreamingDataset`` over ``Stream(remote, local, proportion=...)`` per
    ``(remote, local)`` (Mosaic's weighted mixing), whose items are ``sample_fn(png, label)``."""
    from streaming import Stream, StreamingDataset
    from streaming.base.util import clean_stale_shared_memory

    MosaicDecoded = _module_class("MosaicDecoded", StreamingDataset)
    clean_stale_shared_memory()
    mixed = [Stream(remote=r, local=local, proportion=p) for (r, local), p in zip(streams, proportions)]
    dataset = MosaicDecoded(streams=mixed, shuffle=True, shuffle_seed=0, batch_size=batch_size)
    dataset.sample_fn = sample_fn
    return dataset


class FsspecOpen:
    """webdataset stage: shard URLs -> open streams through fsspec (webdataset has no s3:// handler;
    ``filecache::`` URLs keep a local copy, fsspec's cache)."""

    def __init__(self, options: dict | None) -> None:
        self.options = options or {}

    def __call__(self, src):
        import fsspec
        from torch.utils.data import get_worker_info

        options = dict(self.options)
        if "filecache" in options:  # fsspec's file cache is not safe across processes: one folder per worker
            info = get_worker_info()
            cache = options["filecache"]["cache_storage"]
            options["filecache"] = {**options["filecache"], "cache_storage": f"{cache}/worker-{info.id if info else 0}"}
        for item in src:
            with fsspec.open(item["url"], "rb", **options) as stream:
                yield {"url": item["url"], "stream": stream}


def wds_samples(src):
    """webdataset stage: open tar streams -> samples grouped by key."""
    import webdataset as wds

    yield from wds.tariterators.group_by_keys(wds.tariterators.tar_file_expander(src))
