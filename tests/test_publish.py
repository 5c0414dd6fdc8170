"""Publishing to a real S3 server, resolving versions, verify, and hardening."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import threading
from pathlib import Path

import pytest
from helpers import reseal, tiny_definition

from fractalshards.builder import build
from fractalshards.definition import DatasetDefinition
from fractalshards.errors import ConfigError
from fractalshards.publisher import publish, read_index
from fractalshards.stream import FractalStream
from fractalshards.verifier import verify

EXE = str(Path(sys.executable).parent / "fractalshards")


def _definition(seed: int = 0) -> DatasetDefinition:
    return tiny_definition(6, 4, 7, size=40, points=6_000, seed=seed, name="six")


@pytest.fixture(scope="module")
def datasets(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("pub")
    build(_definition(0), str(root / "a"), workers=0)
    build(_definition(1), str(root / "b"), workers=0)
    return root / "a", root / "b"


def _boto(options):
    import boto3

    return boto3.client(
        "s3",
        endpoint_url=options["endpoint_url"],
        aws_access_key_id=options["key"],
        aws_secret_access_key=options["secret"],
        region_name="us-east-1",
    )


def test_publish_resolve_and_read_with_boto3(datasets, s3_bucket):
    bucket, options = s3_bucket
    a, _ = datasets
    dest = f"s3://{bucket}/datasets/six"
    result = publish(str(a), dest, tags=["v1"], dest_options=options)
    version = json.loads((a / "manifest.json").read_text())["version"]
    assert result.version == version and result.copied == 4 and not result.server_side
    index = read_index(dest, options)
    assert index["latest"] == version and index["tags"] == {"v1": version}
    entry = index["versions"][version]
    assert entry["samples"] == 24 and entry["shards"] == 4 and entry["created"].endswith("Z")
    # Another tool: boto3 lists and reads the published version directly.
    s3 = _boto(options)
    keys = {o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix=f"datasets/six/{version}/")["Contents"]}
    card = {f"datasets/six/{version}/{name}" for name in ("README.md", "croissant.json", "preview.png")}
    assert (
        keys
        == {f"datasets/six/{version}/{n}" for n in ("manifest.json", "wids-index.json")}
        | {f"datasets/six/{version}/shard-{i:06d}.tar" for i in range(4)}
        | card
    )
    body = s3.get_object(Bucket=bucket, Key=f"datasets/six/{version}/manifest.json")["Body"].read()
    assert body == (a / "manifest.json").read_bytes()
    shard = s3.get_object(Bucket=bucket, Key=f"datasets/six/{version}/shard-000000.tar")["Body"].read()
    assert shard == (a / "shard-000000.tar").read_bytes()
    # The loader resolves @tag, @latest and @version through the index.
    local = [label for _, label in FractalStream(str(a), seed=3)]
    for ref in ("v1", "latest", version):
        assert [label for _, label in FractalStream(f"{dest}@{ref}", seed=3, storage_options=options)] == local
    with pytest.raises(ConfigError, match="'v9' is not a tag or version"):
        FractalStream(f"{dest}@v9", storage_options=options)


def test_ls_lists_versions_and_tags(datasets, s3_bucket, capsys):
    from fractalshards.cli import main

    bucket, options = s3_bucket  # the fixture also puts the endpoint and keys in the environment
    a, b = datasets
    dest = f"s3://{bucket}/listing"
    assert main(["--no-progress", "ls", dest]) == 0
    assert "nothing published" in capsys.readouterr().out
    va = publish(str(a), dest, tags=["v1"], dest_options=options).version
    vb = publish(str(b), dest, tags=["v2", "best"], dest_options=options).version
    assert main(["--no-progress", "ls", dest]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[1].startswith(va) and lines[1].rstrip().endswith("v1")
    assert lines[2].startswith(vb) and lines[2].rstrip().endswith("best, v2, latest")
    assert main(["--no-progress", "ls", dest, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["latest"] == vb


def test_versions_and_tags_are_immutable_without_force(datasets, s3_bucket):
    bucket, options = s3_bucket
    a, b = datasets
    dest = f"s3://{bucket}/ds"
    publish(str(a), dest, tags=["v1"], dest_options=options)
    with pytest.raises(ConfigError, match="already published"):
        publish(str(a), dest, dest_options=options)
    with pytest.raises(ConfigError, match="'v1' already names version"):
        publish(str(b), dest, tags=["v1"], dest_options=options)
    publish(str(b), dest, tags=["v2"], dest_options=options)
    moved = publish(str(b), dest, tags=["v1"], force=True, dest_options=options)
    index = read_index(dest, options)
    assert index["tags"] == {"v1": moved.version, "v2": moved.version}
    assert len(index["versions"]) == 2 and index["latest"] == moved.version
    # Adding a new tag to a published version is not an overwrite.
    again = publish(str(a), dest, tags=["first"], dest_options=options)
    assert again.copied == 0 and read_index(dest, options)["tags"]["first"] == again.version


def test_server_side_copy_within_one_store(datasets, s3_bucket):
    bucket, options = s3_bucket
    a, _ = datasets
    build(_definition(0), f"s3://{bucket}/built", storage_options=options, workers=0)
    result = publish(f"s3://{bucket}/built", f"s3://{bucket}/pub", src_options=options, dest_options=options)
    assert result.server_side and result.copied == 4
    assert verify(f"s3://{bucket}/pub@latest", render_sample=5, storage_options=options).ok


def test_concurrent_publishers_keep_both_entries(datasets, s3_bucket):
    bucket, options = s3_bucket
    a, b = datasets
    dest = f"s3://{bucket}/race"
    errors = []

    def run(src, tag):
        try:
            publish(str(src), dest, tags=[tag], dest_options=options)
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(a, "ta")), threading.Thread(target=run, args=(b, "tb"))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    index = read_index(dest, options)
    assert len(index["versions"]) == 2 and set(index["tags"]) == {"ta", "tb"}


def test_interrupted_publish_leaves_the_index_intact_and_a_rerun_completes(datasets, s3_bucket, tmp_path):
    bucket, options = s3_bucket
    a, b = datasets
    dest = f"s3://{bucket}/crash"
    publish(str(a), dest, tags=["v1"], dest_options=options)
    s3 = _boto(options)
    before = s3.get_object(Bucket=bucket, Key="crash/index.json")["Body"].read()
    crash = (
        "import json, sys; sys.path.insert(0, sys.argv[1]); from faulty import FaultyStore; "
        "from fractalshards.publisher import publish; "
        "publish(sys.argv[2], FaultyStore.open(sys.argv[3], {'shard-000002.tar': ('kill', sys.argv[4])}, "
        "json.loads(sys.argv[5])), tags=['v2'])"
    )
    out = subprocess.run(
        [sys.executable, "-c", crash, str(Path(__file__).parent), str(b), dest, str(tmp_path / "killed"), json.dumps(options)],
        capture_output=True,
        text=True,
    )
    assert out.returncode != 0 and (tmp_path / "killed").exists()  # killed mid-copy (like kill -9)
    assert s3.get_object(Bucket=bucket, Key="crash/index.json")["Body"].read() == before
    version_b = json.loads((b / "manifest.json").read_text())["version"]
    listed = {o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix=f"crash/{version_b}/").get("Contents", [])}
    assert f"crash/{version_b}/manifest.json" not in listed and len(listed) == 2  # two shards, no manifest
    assert verify(f"{dest}@v1", storage_options=options).ok  # the previous version is intact
    out = subprocess.run(
        [EXE, "--no-progress", "publish", str(b), dest, "--tag", "v2"], env=dict(os.environ), capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    assert "2 shards copied" in out.stderr and "2 kept" in out.stderr
    index = read_index(dest, options)
    assert index["tags"] == {"v1": json.loads((a / "manifest.json").read_text())["version"], "v2": version_b}


def _tamper(folder: Path, shard: str, fix_manifest: bool, change) -> None:
    path = folder / shard
    with tarfile.open(path) as tar:
        members = [(m, tar.extractfile(m).read()) for m in tar.getmembers()]
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for info, data in change(members):
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    path.write_bytes(buf.getvalue())
    if fix_manifest:
        import hashlib

        m = json.loads((folder / "manifest.json").read_text())
        for s in m["shards"]:
            if s["name"] == shard:
                s["sha256"], s["bytes"] = hashlib.sha256(buf.getvalue()).hexdigest(), len(buf.getvalue())
        (folder / "manifest.json").write_text(json.dumps(reseal(m)))


def test_verify_finds_truncated_altered_and_rerendered_differences(datasets, tmp_path, capsys):
    a, _ = datasets
    from fractalshards.cli import main

    assert main(["--no-progress", "verify", str(a), "--render-sample", "24"]) == 0
    assert capsys.readouterr().out.startswith("ok:")
    copy = tmp_path / "c"
    shutil.copytree(a, copy)
    data = (copy / "shard-000001.tar").read_bytes()
    (copy / "shard-000001.tar").write_bytes(data[:3000])
    report = verify(str(copy))
    assert not report.ok and any(p.startswith("shard-000001.tar") for p in report.problems)
    # A changed image whose shard hash was "fixed" in the manifest: only the re-render finds it.
    shutil.copytree(a, tmp_path / "d")
    from PIL import Image

    def flip_png(members):
        out = []
        for info, data in members:
            if info.name.endswith(".png") and not out_changed:
                im = Image.open(io.BytesIO(data)).convert("L").rotate(90)
                b = io.BytesIO()
                im.save(b, format="PNG")
                data = b.getvalue()
                out_changed.append(info.name)
            out.append((info, data))
        return out

    out_changed: list[str] = []
    _tamper(tmp_path / "d", "shard-000000.tar", True, flip_png)
    assert verify(str(tmp_path / "d")).ok  # bytes and counts agree with the (edited) manifest
    report = verify(str(tmp_path / "d"), render_sample=24)
    assert not report.ok and any("pixels differ" in p and out_changed[0].split(".")[0] in p for p in report.problems)
    assert main(["--no-progress", "verify", str(tmp_path / "d"), "--render-sample", "24"]) == 1
    assert "pixels differ" in capsys.readouterr().out


def test_verify_rejects_unsafe_member_names(datasets, tmp_path):
    a, _ = datasets
    shutil.copytree(a, tmp_path / "u")
    _tamper(tmp_path / "u", "shard-000003.tar", True, lambda ms: [(tarfile.TarInfo("/etc/evil.png"), ms[0][1])] + ms)
    report = verify(str(tmp_path / "u"))
    assert any("unsafe member name" in p for p in report.problems)


SECRET_KEY_ID = "AKIAFRACTALSECRET0001"
SECRET = "wJalrXUtnFEMI/K7MDENG/fractalSECRETkey99"


def test_credentials_never_appear_in_outputs_or_files(datasets, s3_endpoint, tmp_path):
    a, _ = datasets
    import s3fs

    env = dict(os.environ, AWS_ACCESS_KEY_ID=SECRET_KEY_ID, AWS_SECRET_ACCESS_KEY=SECRET, FSSPEC_S3_ENDPOINT_URL=s3_endpoint)
    s3fs.S3FileSystem(key=SECRET_KEY_ID, secret=SECRET, endpoint_url=s3_endpoint, skip_instance_cache=True).mkdir("secret-bucket")
    runs = [
        [
            "build",
            "--preset",
            "fractaldb-100",
            "--instances",
            "1",
            "--size",
            "32",
            "--points",
            "3000",
            "--shard-size",
            "50",
            "--workers",
            "0",
            "--out",
            "s3://secret-bucket/built",
        ],
        ["info", "s3://secret-bucket/built"],
        ["publish", str(a), "s3://secret-bucket/pub", "--tag", "v1"],
        ["ls", "s3://secret-bucket/pub"],
        ["verify", "s3://secret-bucket/pub@v1", "--render-sample", "3"],
        ["verify", "s3://no-such-bucket/x"],  # an error path
        ["publish", str(a), "s3://no-such-bucket/pub"],
    ]
    outputs = []
    for args in runs:
        out = subprocess.run([EXE, "--no-progress", *args], env=env, capture_output=True, text=True)
        outputs.append(out.stdout + out.stderr)
    assert all(SECRET not in o and SECRET_KEY_ID not in o for o in outputs)
    assert "bucket" in outputs[-1].lower() or "no-such-bucket" in outputs[-1]
    fs = s3fs.S3FileSystem(key=SECRET_KEY_ID, secret=SECRET, endpoint_url=s3_endpoint, skip_instance_cache=True)
    for path in fs.find("secret-bucket"):
        if path.endswith(".json"):
            text = fs.cat_file(path).decode()
            assert SECRET not in text and SECRET_KEY_ID not in text and "endpoint" not in text


@pytest.mark.parametrize(
    "args",
    [
        ["info", "nosuchproto://bucket/x"],
        ["info", "s3://"],
        ["ls", "s3://no-such-bucket/pub"],
        ["publish", "/nonexistent/dataset", "s3://whatever/x"],
    ],
)
def test_bad_urls_and_missing_buckets_are_one_line_errors(args, s3_endpoint):
    env = dict(os.environ, AWS_ACCESS_KEY_ID="k", AWS_SECRET_ACCESS_KEY="s", FSSPEC_S3_ENDPOINT_URL=s3_endpoint)
    out = subprocess.run([EXE, "--no-progress", *args], env=env, capture_output=True, text=True)
    assert out.returncode != 0
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "error" in lines[0], out.stderr


def test_wrong_credentials_are_a_one_line_error(tmp_path, datasets):
    """A second S3 server that checks signatures (moto with auth on): unknown keys are refused."""
    import socket
    import time

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = subprocess.Popen(
        [str(Path(sys.executable).parent / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
        env=dict(os.environ, INITIAL_NO_AUTH_ACTION_COUNT="0"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.time() + 30
        while time.time() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.2)
        env = dict(
            os.environ,
            AWS_ACCESS_KEY_ID=SECRET_KEY_ID,
            AWS_SECRET_ACCESS_KEY=SECRET,
            FSSPEC_S3_ENDPOINT_URL=f"http://127.0.0.1:{port}",
        )
        commands = (
            ["publish", str(datasets[0]), "s3://bucket/x"],
            ["info", "s3://bucket/x"],
            ["ls", "s3://bucket/x"],
            ["verify", "s3://bucket/x"],
            ["build", "--like", str(datasets[0]), "--workers", "0", "--out", "s3://bucket/y"],
        )
        for args in commands:
            start = time.time()
            out = subprocess.run([EXE, "--no-progress", *args], env=env, capture_output=True, text=True, timeout=120)
            lines = [line for line in out.stderr.splitlines() if line.strip()]
            assert out.returncode == 2 and len(lines) == 1, out.stderr
            assert "refused the credentials for bucket 'bucket'" in lines[0], lines[0]  # not "unreachable", not "missing"
            assert time.time() - start < 15 + 10, args  # 10 s for the interpreter and imports
            assert SECRET not in out.stderr and SECRET_KEY_ID not in out.stderr
    finally:
        server.terminate()
        server.wait(timeout=10)
