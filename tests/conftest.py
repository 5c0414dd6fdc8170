"""Shared fixtures: test vectors and small checkable systems."""

from __future__ import annotations

import os

# GPU kernels run in numba's CUDA simulator unless a real GPU is asked for (make test-gpu); numba
# reads this when it is first imported, so it is set before anything imports numba.
if os.environ.get("FRACTALSHARDS_TEST_GPU") != "1":
    os.environ["NUMBA_ENABLE_CUDASIM"] = "1"

import hashlib
import re
import shutil
import tempfile

import numpy as np
import pytest
from helpers import S3_REQUESTS
from hypothesis import HealthCheck, settings

from fractalshards.families.fractaldb.ifs import IFS

# Property-based tests: a fixed-seed budget in `make test` (`ci`), a longer random one in `make fuzz`.
_SLOW_OK = [HealthCheck.too_slow, HealthCheck.function_scoped_fixture, HealthCheck.data_too_large]
settings.register_profile("ci", derandomize=True, max_examples=150, deadline=None, suppress_health_check=_SLOW_OK)
settings.register_profile("fuzz", max_examples=2_000, deadline=None, suppress_health_check=_SLOW_OK)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

# Nothing in the tests may reach outside this machine: no instance-metadata lookups for
# credentials, no Ray usage reports, and S3 clients without an explicit endpoint go to a
# closed local port instead of AWS. Set before Ray or any client starts (workers inherit it).
os.environ["AWS_EC2_METADATA_DISABLED"] = "true"
os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
os.environ.setdefault("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
os.environ.setdefault("AWS_ACCESS_KEY_ID", "unused")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "unused")
# The default node cache of remote shards goes under a temporary folder, never ~/.cache.
_CACHE_HOME = tempfile.mkdtemp(prefix="fractalshards-test-cache-")
os.environ["FRACTALSHARDS_CACHE"] = _CACHE_HOME
# Every Ray of the tests (embedded, `ray start`, job submissions) keeps its sessions and its
# ray_current_cluster file here, not in /tmp/ray: a stale /tmp/ray/ray_current_cluster makes the
# user's next plain ray.init() wait for a dead cluster. Short, for Ray's socket paths.
_RAY_TMP = tempfile.mkdtemp(prefix="fsray-", dir="/tmp")
os.environ["RAY_TMPDIR"] = _RAY_TMP


def _ray_address_file_stamp() -> float | None:
    try:
        return os.stat("/tmp/ray/ray_current_cluster").st_mtime
    except FileNotFoundError:
        return None


@pytest.fixture(scope="session", autouse=True)
def _leave_the_machine_as_found():
    """Fail the run when the suite leaves a process or a Ray address file behind; remove our temp folders."""
    import psutil

    stamp = _ray_address_file_stamp()
    yield
    children = psutil.Process().children(recursive=True)
    _, alive = psutil.wait_procs(children, timeout=15)
    for proc in alive:
        try:
            proc.kill()
        except psutil.NoSuchProcess:
            pass
    shutil.rmtree(_CACHE_HOME, ignore_errors=True)
    shutil.rmtree(_RAY_TMP, ignore_errors=True)
    problems = [f"process {p.pid} ({' '.join(p.cmdline()[:3]) if p.is_running() else '?'}) was still running" for p in alive]
    if _ray_address_file_stamp() != stamp:
        problems.append("/tmp/ray/ray_current_cluster was written by the tests")
    assert not problems, "; ".join(problems)


@pytest.fixture
def sierpinski() -> IFS:
    """A contractive 3-map system with a known, well-filled attractor."""
    coef = np.array(
        [
            [0.5, 0.0, 0.0, 0.5, 0.0, 0.0],
            [0.5, 0.0, 0.0, 0.5, 0.5, 0.0],
            [0.5, 0.0, 0.0, 0.5, 0.25, 0.5],
        ]
    )
    return IFS.from_coefficients(coef)


@pytest.fixture
def divergent() -> IFS:
    """An expanding system: its orbit overflows to inf and then NaN."""
    coef = np.array(
        [
            [1.9, 0.8, -0.7, 1.7, 0.3, 0.1],
            [-1.8, 0.9, 0.9, 1.9, -0.2, 0.4],
        ]
    )
    return IFS.from_coefficients(coef)


@pytest.fixture(scope="session")
def built_dataset(tmp_path_factory):
    """The suite's one built dataset, read-only (copy it to change it): the first 4 categories of
    fractaldb-100, 3 instances each (12 samples) of 40 px from 3,000 points, in shards of 5, licensed
    MIT, built inline through the command line."""
    from fractalshards.cli import main

    out = tmp_path_factory.mktemp("built") / "ds"
    argv = ["--no-progress", "build", "--preset", "fractaldb-100", "--categories", "4", "--instances", "3"]
    argv += ["--size", "40", "--points", "3000", "--shard-size", "5", "--workers", "0", "--license", "MIT"]
    assert main([*argv, "--out", str(out)]) == 0
    return out


#: Throttling of the test S3 server: while ``rate`` > 0, that fraction of requests (a seeded draw) is
#: answered 503 SlowDown or 429 instead, as an overloaded S3 does; ``answered`` counts them.
S3_THROTTLE: dict = {"rate": 0.0, "rng": None, "answered": 0}

_SLOW_DOWN = (
    b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>SlowDown</Code>'
    b"<Message>Please reduce your request rate.</Message><RequestId>test</RequestId></Error>"
)


def _counting_moto_server(port: int):
    """moto's threaded server with a WSGI layer that records each request (to count GETs per shard)."""
    from moto.server import DomainDispatcherApplication, MotoRequestHandler, ThreadedMotoServer, create_backend_app
    from werkzeug.serving import make_server

    class CountingServer(ThreadedMotoServer):
        def _server_entry(self) -> None:
            app = DomainDispatcherApplication(create_backend_app)

            def counting(environ, start_response):
                S3_REQUESTS.append((environ["REQUEST_METHOD"], environ.get("PATH_INFO", ""), environ.get("QUERY_STRING", "")))
                throttle = S3_THROTTLE
                if throttle["rate"] > 0 and throttle["rng"].random() < throttle["rate"]:
                    throttle["answered"] += 1
                    environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))  # drain the upload
                    status = "503 Slow Down" if throttle["rng"].random() < 0.5 else "429 Too Many Requests"
                    start_response(status, [("Content-Type", "application/xml"), ("Content-Length", str(len(_SLOW_DOWN)))])
                    return [_SLOW_DOWN]
                return app(environ, start_response)

            self._server = make_server(self._ip_address, self._port, counting, True, request_handler=MotoRequestHandler)
            self._server_ready_event.set()
            self._server.serve_forever()

    return CountingServer(ip_address="127.0.0.1", port=port, verbose=False)


@pytest.fixture(scope="session")
def s3_endpoint():
    """A real S3 server (moto's standalone server) on 127.0.0.1 and a free port, counting requests."""
    import logging
    import socket

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one line per request otherwise

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = _counting_moto_server(port)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


@pytest.fixture
def s3_bucket(s3_endpoint, monkeypatch, request):
    """A fresh bucket; returns (bucket name, storage_options). Credentials also in the env,
    as a user (and a Ray worker) would have them."""
    import s3fs

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing-secret")
    monkeypatch.setenv("FSSPEC_S3_ENDPOINT_URL", s3_endpoint)
    options = {"key": "testing", "secret": "testing-secret", "endpoint_url": s3_endpoint}
    fs = s3fs.S3FileSystem(skip_instance_cache=True, **options)
    slug = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower())[:40].strip("-")
    digest = hashlib.sha1(request.node.nodeid.encode()).hexdigest()[:8]  # parametrised names share a prefix
    name = f"b-{slug[:30].strip('-')}-{digest}-{os.getpid()}"
    fs.mkdir(name)
    return name, options


@pytest.fixture
def s3_throttled():
    """Throttle the test S3 server (see :data:`S3_THROTTLE`) for one test; returns the knob."""
    import random

    def set_rate(rate: float, seed: int = 0) -> dict:
        S3_THROTTLE.update(rate=rate, rng=random.Random(seed), answered=0)
        return S3_THROTTLE

    yield set_rate
    S3_THROTTLE.update(rate=0.0, rng=None)
