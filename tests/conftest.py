"""Shared fixtures: test vectors and small checkable systems."""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import pytest

from fractalshards.ifs import IFS

VECTORS = Path(__file__).parent / "vectors"

# Nothing in the tests may reach outside this machine: no instance-metadata lookups for
# credentials, no Ray usage reports, and S3 clients without an explicit endpoint go to a
# closed local port instead of AWS. Set before Ray or any client starts (workers inherit it).
os.environ["AWS_EC2_METADATA_DISABLED"] = "true"
os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
os.environ.setdefault("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
os.environ.setdefault("AWS_ACCESS_KEY_ID", "unused")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "unused")


def read_vectors(name: str) -> list[list[str]]:
    """Rows of a whitespace-separated test-vector file."""
    return [line.split() for line in (VECTORS / name).read_text().splitlines() if line.strip()]


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
def s3_endpoint():
    """A real S3 server (moto's standalone server) on 127.0.0.1 and a free port."""
    import socket

    import logging

    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one line per request otherwise

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
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
    name = f"b-{slug}-{os.getpid()}"
    fs.mkdir(name)
    return name, options
