"""Faults at cluster scale: a node of a real two-node Ray cluster killed mid-build."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from helpers import tiny_definition

from fractalshards.builder import build
from fractalshards.definition import DatasetDefinition

TESTS = Path(__file__).resolve().parent


def _definition() -> DatasetDefinition:
    return tiny_definition(14, 3, 3, size=48, points=5_000, seed=4)


_DRIVER = textwrap.dedent("""
    import sys
    sys.path.insert(0, sys.argv[1])
    from faulty import SlowStore, ship_by_value
    from fractalshards.builder import build
    from fractalshards.definition import DatasetDefinition
    from fractalshards.presets import load_preset
    from fractalshards.families.fractaldb.render import RenderSettings
    ship_by_value()
    d = DatasetDefinition(categories=load_preset("fractaldb-100").subset(14, name="tiny14"), instances=3,
                          render=RenderSettings(mode="official", size=48, points=5_000, seed=4), shard_size=3)
    build(d, SlowStore.open(sys.argv[2], 0.6, sys.argv[3]), address=sys.argv[4], max_retries=5, max_in_flight=4)
""")


@pytest.mark.slow
def test_a_node_killed_mid_build_leaves_the_same_bytes(tmp_path):
    from ray.cluster_utils import Cluster

    cluster = Cluster(
        initialize_head=True,
        head_node_args={"num_cpus": 1, "_system_config": {"health_check_period_ms": 300, "health_check_failure_threshold": 3}},
    )
    driver = None
    try:
        doomed = cluster.add_node(num_cpus=1)
        cluster.wait_for_nodes()
        log = tmp_path / "log"
        log.mkdir()
        env = dict(os.environ, RAY_AUTH_MODE="disabled")
        driver = subprocess.Popen(
            [sys.executable, "-c", _DRIVER, str(TESTS), str(tmp_path / "cluster"), str(log), cluster.address],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        deadline = time.time() + 120
        while not list(log.glob(f"*.{doomed.node_id}")):
            assert time.time() < deadline and driver.poll() is None, "no task reached the second node"
            time.sleep(0.05)
        cluster.remove_node(doomed, allow_graceful=False)  # SIGKILL of the node's raylet and workers, mid-task
        output, _ = driver.communicate(timeout=300)
        assert driver.returncode == 0, output[-3000:]
    finally:
        if driver is not None and driver.poll() is None:
            driver.kill()
            driver.wait()
        cluster.shutdown()
    killed_shards = {p.name.rsplit(".", 1)[0] for p in log.glob(f"*.{doomed.node_id}")}
    head_shards = {p.name.rsplit(".", 1)[0] for p in log.iterdir()} - killed_shards
    assert killed_shards and head_shards
    build(_definition(), str(tmp_path / "inline"), workers=0)
    inline = sorted(p.name for p in (tmp_path / "inline").iterdir())
    assert inline == sorted(p.name for p in (tmp_path / "cluster").iterdir())  # no journal or temp name left
    for name in inline:
        assert (
            hashlib.sha256((tmp_path / "cluster" / name).read_bytes()).digest()
            == hashlib.sha256((tmp_path / "inline" / name).read_bytes()).digest()
        ), name


def _digest(stream) -> list[tuple[int, str]]:
    return [(label, hashlib.sha256(image.numpy().tobytes()).hexdigest()) for image, label in stream]


@pytest.mark.slow
def test_streaming_and_publishing_through_a_flaky_network(tmp_path, s3_bucket, s3_endpoint):
    """Resets and stalls between the client and the S3 server: identical results, no hang."""
    from urllib.parse import urlparse

    from flaky import FlakyProxy

    from fractalshards.catalog import read_index
    from fractalshards.loader import FractalLoader
    from fractalshards.publisher import publish
    from fractalshards.stream import FractalStream
    from fractalshards.verifier import verify

    bucket, options = s3_bucket
    definition = _definition()
    build(definition, str(tmp_path / "local"), workers=0)
    build(definition, f"s3://{bucket}/ds", storage_options=options, workers=0)
    expected = _digest(FractalStream(str(tmp_path / "local"), seed=3))
    target = urlparse(s3_endpoint)
    proxy = FlakyProxy((target.hostname, target.port), reset=0.2, stall=0.1, stall_s=0.5, seed=7)
    try:
        flaky = dict(options, endpoint_url=proxy.endpoint)
        start = time.time()
        got = _digest(FractalStream(f"s3://{bucket}/ds", seed=3, cache_dir=False, storage_options=flaky))
        assert got == expected  # nothing skipped, duplicated or altered
        loader = FractalLoader(
            FractalStream(f"s3://{bucket}/ds", seed=3, cache_dir=str(tmp_path / "cache"), storage_options=flaky),
            batch_size=4,
            num_workers=2,
        )
        assert [int(x) for _, labels in loader for x in labels] == [label for label, _ in expected]
        result = publish(str(tmp_path / "local"), f"s3://{bucket}/pub", tags=["v1"], dest_options=flaky)
        assert time.time() - start < 240
        assert proxy.counts["reset"] > 0 and proxy.counts["stall"] > 0, proxy.counts
    finally:
        proxy.stop()
    assert read_index(f"s3://{bucket}/pub", options)["tags"]["v1"] == result.version
    assert verify(f"s3://{bucket}/pub@v1", storage_options=options).ok


@pytest.mark.slow
def test_a_dead_network_fails_in_bounded_time_with_one_line_naming_the_shard(tmp_path, s3_bucket, s3_endpoint):
    from urllib.parse import urlparse

    import pytest
    from flaky import FlakyProxy

    from fractalshards.errors import TransferError
    from fractalshards.stream import FractalStream

    bucket, options = s3_bucket
    build(_definition(), f"s3://{bucket}/ds", storage_options=options, workers=0)
    target = urlparse(s3_endpoint)
    proxy = FlakyProxy((target.hostname, target.port), reset=0.0, stall=0.0, seed=1)
    try:
        stream = FractalStream(
            f"s3://{bucket}/ds",
            shuffle=False,
            cache_dir=False,
            storage_options=dict(options, endpoint_url=proxy.endpoint, config_kwargs={"retries": {"max_attempts": 2}}),
        )
        proxy.reset = 1.0  # from now on every connection is reset
        start = time.time()
        with pytest.raises(TransferError) as err:
            list(stream)
        assert time.time() - start < 120
        message = str(err.value)
        assert message.startswith("shard-000000.tar: could not be fetched") and "\n" not in message
        assert "testing-secret" not in message
    finally:
        proxy.stop()


@pytest.mark.slow
def test_a_store_that_trickles_a_byte_at_a_time_fails_within_the_fetch_deadline(tmp_path, s3_bucket, s3_endpoint, monkeypatch):
    from urllib.parse import urlparse

    from flaky import FlakyProxy

    from fractalshards.errors import TransferError
    from fractalshards.stream import FractalStream

    bucket, options = s3_bucket
    build(_definition(), f"s3://{bucket}/ds", storage_options=options, workers=0)
    target = urlparse(s3_endpoint)
    proxy = FlakyProxy((target.hostname, target.port), reset=0.0, stall=0.0, seed=1)
    monkeypatch.setenv("FRACTALSHARDS_FETCH_WINDOW_S", "2")
    try:
        stream = FractalStream(
            f"s3://{bucket}/ds", shuffle=False, cache_dir=False, storage_options=dict(options, endpoint_url=proxy.endpoint)
        )
        proxy.trickle_s = 2.0  # a byte every 2 s after the headers: the client's read timeout never fires
        start = time.time()
        with pytest.raises(TransferError, match=r"^shard-000000\.tar: could not be fetched .* not read within 2 s"):
            list(stream)
        from fractalshards.sources import FETCH_ATTEMPTS
        from fractalshards.storage import fetch_deadline

        # A shard's attempts and the backoff between them; the stream also waits for the shards it was
        # prefetching meanwhile, which fail the same way at the same time.
        bound = 2 * (FETCH_ATTEMPTS * fetch_deadline(max(stream.sizes.values())) + 1.5) + 5
        assert time.time() - start < bound
    finally:
        proxy.trickle_s = 0.0
        proxy.stop()
