"""Building shards: determinism across runners, S3, retries, resume, bad input."""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
import tarfile
from pathlib import Path

import numpy as np
import pytest
import webdataset as wds
from faulty import FaultyStore, ship_by_value
from helpers import tiny_definition
from PIL import Image

from fractalshards.builder import build
from fractalshards.cli import main
from fractalshards.definition import DatasetDefinition
from fractalshards.errors import ConfigError
from fractalshards.families.fractaldb.instances import instance_from_index
from fractalshards.families.fractaldb.render import render
from fractalshards.presets import load_preset


def small_definition(instances: int = 5, **kwargs) -> DatasetDefinition:
    """12 categories x 5 instances at 96 px: 60 samples in 5 shards of 12."""
    return tiny_definition(12, instances, 12, size=96, points=20_000, seed=3, name="tiny", **kwargs)


def shard_hashes(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.glob("shard-*.tar"))}


def test_plan_is_a_seeded_permutation_mixing_categories():
    d = small_definition()
    specs = d.shard_specs()
    pairs = [p for s in specs for p in s.pairs]
    assert sorted(pairs) == [(c, i) for c in range(12) for i in range(5)]
    assert pairs != sorted(pairs)
    assert all(len({c for c, _ in s.pairs}) > 3 for s in specs)  # every shard mixes categories
    assert [p for s in small_definition().shard_specs() for p in s.pairs] == pairs
    other = [p for s in tiny_definition(12, 5, 12, size=96, points=20_000, seed=4, name="tiny").shard_specs() for p in s.pairs]
    assert other != pairs


@pytest.mark.slow
def test_inline_one_and_two_ray_workers_give_identical_bytes(tmp_path):
    d = small_definition()
    inline = build(d, str(tmp_path / "inline"), workers=0)
    one = build(d, str(tmp_path / "one"), workers=1)
    two = build(d, str(tmp_path / "two"), workers=2)
    assert shard_hashes(tmp_path / "inline") == shard_hashes(tmp_path / "one") == shard_hashes(tmp_path / "two")
    assert len(shard_hashes(tmp_path / "inline")) == 5
    manifests = {(tmp_path / n / "manifest.json").read_bytes() for n in ("inline", "one", "two")}
    assert len(manifests) == 1
    assert inline.manifest.version == one.manifest.version == two.manifest.version
    # The manifest's hashes are the files' hashes.
    listed = {s.name: s.sha256 for s in inline.manifest.shards}
    assert listed == shard_hashes(tmp_path / "inline")
    assert not (tmp_path / "inline" / "_build").exists()


def test_shards_read_with_tar_and_plain_webdataset(tmp_path):
    d = small_definition()
    build(d, str(tmp_path), workers=0)
    names = subprocess.run(
        ["tar", "tf", str(tmp_path / "shard-000000.tar")], capture_output=True, text=True, check=True
    ).stdout.split()
    assert len(names) == 3 * 12
    assert names[:3] == [names[0].rsplit(".", 1)[0] + ext for ext in (".cls", ".json", ".png")]
    with tarfile.open(tmp_path / "shard-000000.tar") as tar:
        for m in tar.getmembers():
            assert (m.mtime, m.uid, m.gid, m.uname, m.gname, m.mode) == (946684800, 0, 0, "", "", 0o444)
    url = str(tmp_path / "shard-{000000..000004}.tar")
    samples = list(wds.WebDataset(url, shardshuffle=False))
    assert len(samples) == 60
    manifest = load_preset("fractaldb-100")
    for s in samples[:6]:
        meta = json.loads(s["json"])
        assert int(s["cls"]) == meta["category"]
        img = np.asarray(Image.open(io.BytesIO(s["png"])).convert("L"))
        assert Image.open(io.BytesIO(s["png"])).mode in ("P", "L")  # 1-channel
        expected = render(
            manifest.category(meta["category"]).system, meta["category"], instance_from_index(meta["instance"]), d.render
        ).image
        np.testing.assert_array_equal(img, expected)
        assert meta["render"] == d.render.to_dict()
        assert len(meta["maps"]) == len(meta["probabilities"]) == manifest.category(meta["category"]).system.num_maps


def test_build_to_s3_reads_back_with_webdataset(tmp_path, s3_bucket, s3_endpoint):
    bucket, options = s3_bucket
    d = small_definition()
    result = build(d, f"s3://{bucket}/ds", storage_options=options, workers=2)
    local = build(d, str(tmp_path), workers=0)
    assert [s.sha256 for s in result.manifest.shards] == [s.sha256 for s in local.manifest.shards]
    import s3fs

    fs = s3fs.S3FileSystem(skip_instance_cache=True, **options)
    # Plain webdataset over the server's HTTP interface with presigned URLs (webdataset's own
    # gopen, curl), as a user without fsspec would read them.
    urls = [fs.sign(f"{bucket}/ds/shard-{i:06d}.tar") for i in range(5)]
    assert all(u.startswith(s3_endpoint) for u in urls)
    samples = list(wds.WebDataset(urls, shardshuffle=False))
    assert len(samples) == 60
    assert sorted(s["__key__"] for s in samples) == sorted(f"{c:06d}-{i:04d}" for c in range(12) for i in range(5))
    assert sorted(fs.ls(f"{bucket}/ds", detail=False)) == sorted(
        [f"{bucket}/ds/manifest.json", f"{bucket}/ds/wids-index.json"] + [f"{bucket}/ds/shard-{i:06d}.tar" for i in range(5)]
    )
    assert fs.cat_file(f"{bucket}/ds/manifest.json") == (tmp_path / "manifest.json").read_bytes()


@pytest.mark.slow
def test_killed_and_failing_tasks_are_retried_with_identical_result(tmp_path, monkeypatch):
    d = small_definition()
    clean = build(d, str(tmp_path / "clean"), workers=0)
    kill_marker, raise_marker = tmp_path / "killed", tmp_path / "raised"
    ship_by_value()
    store = FaultyStore.open(
        str(tmp_path / "faulty"),
        {"shard-000001.tar": ("kill", str(kill_marker)), "shard-000003.tar": ("raise", str(raise_marker))},
    )
    result = build(d, store, workers=2, max_retries=2)
    assert kill_marker.exists() and raise_marker.exists()
    assert result.manifest.data == clean.manifest.data
    assert shard_hashes(tmp_path / "faulty") == shard_hashes(tmp_path / "clean")


def test_rerun_rebuilds_only_missing_or_wrong_shards(tmp_path):
    d = small_definition()
    first = build(d, str(tmp_path), workers=0)
    before = shard_hashes(tmp_path)
    (tmp_path / "shard-000002.tar").unlink()
    (tmp_path / "shard-000004.tar").write_bytes(b"garbage")
    mtime_kept = (tmp_path / "shard-000000.tar").stat().st_mtime_ns
    again = build(d, str(tmp_path), workers=0)
    assert again.built == 2 and again.skipped == 3
    assert {e.name for e in again.entries if not e.skipped} == {"shard-000002.tar", "shard-000004.tar"}
    assert shard_hashes(tmp_path) == before
    assert (tmp_path / "shard-000000.tar").stat().st_mtime_ns == mtime_kept
    assert again.manifest.data == first.manifest.data


def test_interrupted_build_resumes_from_its_journal(tmp_path, monkeypatch):
    d = small_definition()
    store = FaultyStore.open(str(tmp_path / "ds"), {"shard-000003.tar": ("raise", str(tmp_path / "marker"))})
    with pytest.raises(RuntimeError, match="injected"):
        build(d, store, workers=0)
    assert not (tmp_path / "ds" / "manifest.json").exists()  # not a dataset yet
    assert len(list((tmp_path / "ds").glob("shard-*.tar"))) == 3
    resumed = build(d, str(tmp_path / "ds"), workers=0)
    assert resumed.skipped == 3 and resumed.built == 2
    build(d, str(tmp_path / "clean"), workers=0)
    assert (tmp_path / "ds" / "manifest.json").read_bytes() == (tmp_path / "clean" / "manifest.json").read_bytes()


def test_other_definition_in_the_same_folder_is_refused(tmp_path):
    build(small_definition(), str(tmp_path), workers=0)
    with pytest.raises(ConfigError, match="another definition") as err:
        build(small_definition(instances=4), str(tmp_path), workers=0)
    assert "differs in instances_per_category" in str(err.value)
    # A folder built with the previous PNG encoder, rebuilt with today's default: the message names the field.
    with pytest.raises(ConfigError, match=r"differs in png\.encoder\)") as err:
        build(small_definition(png_encoder="pillow"), str(tmp_path), workers=0)
    assert "\n" not in str(err.value)


def _cli(args, capsys):
    code = main(["--no-progress", *args])
    return code, capsys.readouterr()


def test_cli_build_info_and_preview_from_shards(tmp_path, capsys):
    out = tmp_path / "data"
    code, _ = _cli(
        [
            "build",
            "--preset",
            "fractaldb-100",
            "--instances",
            "2",
            "--shard-size",
            "50",
            "--size",
            "64",
            "--points",
            "10000",
            "--workers",
            "0",
            "--out",
            str(out),
        ],
        capsys,
    )
    assert code == 0
    assert len(list(out.glob("shard-*.tar"))) == 4
    code, cap = _cli(["info", str(out)], capsys)
    assert code == 0
    assert "fractaldb-100" in cap.out and "200 = 100 categories x 2 instances" in cap.out
    code, cap = _cli(["info", str(out), "--json"], capsys)
    assert json.loads(cap.out)["totals"]["samples"] == 200
    grid = tmp_path / "grid.png"
    code, _ = _cli(["preview", str(out), "--categories", "3", "--instances", "2", "--tile", "32", "--out", str(grid)], capsys)
    assert code == 0
    with Image.open(grid) as im:
        assert im.width > 2 * 32 and im.height > 3 * 32
    # The dataset's manifest.json serves as the category source of a rebuild.
    code, _ = _cli(
        [
            "build",
            "--manifest",
            str(out / "manifest.json"),
            "--instances",
            "2",
            "--shard-size",
            "50",
            "--size",
            "64",
            "--points",
            "10000",
            "--workers",
            "0",
            "--name",
            "fractaldb-100",
            "--out",
            str(tmp_path / "again"),
        ],
        capsys,
    )
    assert code == 0
    assert (tmp_path / "again" / "manifest.json").read_bytes() == (out / "manifest.json").read_bytes()


@pytest.mark.parametrize(
    "args,needle",
    [
        (["--preset", "nope", "--instances", "2"], "preset"),
        (["--preset", "fractaldb-100", "--instances", "0"], "instances"),
        (["--preset", "fractaldb-100", "--instances", "2", "--shard-size", "-5"], "shard-size"),
    ],
)
def test_build_bad_input_one_line_nothing_written(tmp_path, args, needle):
    exe = str(Path(__import__("sys").executable).parent / "fractalshards")
    out = subprocess.run([exe, "build", *args, "--workers", "0", "--out", str(tmp_path / "ds")], capture_output=True, text=True)
    assert out.returncode == 2
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and needle in lines[0]
    assert not (tmp_path / "ds").exists()


def test_unreachable_store_fails_fast_with_one_line(tmp_path, capsys, monkeypatch):
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        dead = sock.getsockname()[1]  # nothing listens here once closed
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "k")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "s")
    monkeypatch.setenv("FSSPEC_S3_ENDPOINT_URL", f"http://127.0.0.1:{dead}")
    code, cap = _cli(
        ["build", "--preset", "fractaldb-100", "--instances", "1", "--workers", "0", "--out", "s3://nobucket/x"], capsys
    )
    assert code == 2
    lines = [line for line in cap.err.splitlines() if line.strip() and "error" in line]
    assert len(lines) == 1 and "url:" in lines[0]


def test_missing_bucket_is_a_clear_error(s3_bucket):
    _, options = s3_bucket
    with pytest.raises(ConfigError, match="bucket 'does-not-exist'"):
        build(small_definition(), "s3://does-not-exist/ds", storage_options=options, workers=0)


def _tarfile_archive(members) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size, info.mtime, info.mode, info.uid, info.gid, info.uname, info.gname = (
                len(data),
                946684800,
                0o444,
                0,
                0,
                "",
                "",
            )
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def test_tar_writer_writes_what_tarfile_writes():
    # Shards of datasets built with the tarfile module must rebuild to the same bytes.
    from fractalshards.tarformat import tar_bytes

    rng = np.random.default_rng(0)
    for _ in range(60):
        members = []
        for _ in range(int(rng.integers(0, 7))):
            size = int(rng.choice([0, 1, 511, 512, 513, 1024, 10240, int(rng.integers(0, 30000))]))
            name = f"{int(rng.integers(0, 10**6)):06d}-{int(rng.integers(0, 1000)):04d}.{rng.choice(['png', 'cls', 'json'])}"
            members.append((name, rng.bytes(size)))
        assert tar_bytes(members) == _tarfile_archive(members)
    long_name = "x" * 101 + ".png"
    with pytest.raises(ValueError, match="longer than 100"):
        tar_bytes([(long_name, b"")])


def test_build_refuses_a_folder_of_someone_elses_files(tmp_path, capsys):
    folder = tmp_path / "theirs"
    folder.mkdir()
    (folder / "notes.txt").write_text("mine")
    (folder / "shard-000000.tar").write_bytes(b"not yours")
    d = tiny_definition(2, 3, 4)
    with pytest.raises(ConfigError, match=r"holds files that are not a fractalshards dataset \('notes\.txt'\)"):
        build(d, str(folder), workers=0)
    assert (folder / "shard-000000.tar").read_bytes() == b"not yours" and sorted(p.name for p in folder.iterdir()) == [
        "notes.txt",
        "shard-000000.tar",
    ]
    # An unfinished build of another definition is not written over either; one of this definition resumes.
    other = tmp_path / "other"
    other.mkdir()
    (other / "_build" / "0123456789abcdef").mkdir(parents=True)
    with pytest.raises(ConfigError, match=r"an unfinished build of another definition \(_build/0123456789abcdef\)"):
        build(d, str(other), workers=0)
    ours = tmp_path / "ours"
    build(d, str(ours), workers=0)
    build(d, str(ours), workers=0)  # a dataset of this definition: resumed, nothing refused
    assert main(["--no-progress", "build", "--like", str(ours), "--out", str(folder), "--workers", "0"]) == 2
    assert "not a fractalshards dataset" in capsys.readouterr().err


@pytest.mark.parametrize("name", ["two\nlines", "bell\a", "x" * 201])
def test_a_name_readers_would_refuse_is_refused_before_anything_is_written(tmp_path, capsys, name):
    out = tmp_path / "out"
    code = main(["--no-progress", "build", "--preset", "fractaldb-100", "--categories", "1", "--instances", "2",
                 "--size", "32", "--workers", "0", "--name", name, "--out", str(out)])  # fmt: skip
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "name" in err[0] and "1-200 printable characters" in err[0], err
    assert not out.exists()


def test_overwrite_replaces_a_dataset_of_another_definition_in_a_folder_it_owns(tmp_path, capsys):
    folder = tmp_path / "ds"
    build(small_definition(), str(folder), workers=0)
    main(["--no-progress", "card", str(folder), "--no-preview"])
    old_shards = sorted(p.name for p in folder.glob("shard-*.tar"))
    with pytest.raises(ConfigError, match="replace it with --overwrite"):
        build(small_definition(instances=2), str(folder), workers=0)
    said = []
    result = build(small_definition(instances=2), str(folder), workers=0, overwrite=True, log_fn=said.append)
    assert any(line.startswith("overwrite: removed dataset") for line in said)
    fresh = tmp_path / "fresh"
    build(small_definition(instances=2), str(fresh), workers=0)
    # The folder is now exactly what a fresh build gives: no old shard, card or journal left over.
    assert sorted(p.name for p in folder.iterdir()) == sorted(p.name for p in fresh.iterdir())
    assert (folder / "manifest.json").read_bytes() == (fresh / "manifest.json").read_bytes()
    assert result.built == 12 * 2 // 12 and len(old_shards) == 5
    # An unfinished build of another definition, and its shards, go the same way; other files never do.
    other = tmp_path / "other"
    (other / "_build" / "0123456789abcdef").mkdir(parents=True)
    (other / "shard-000009.tar").write_bytes(b"from the other build")
    assert main(["--no-progress", "build", "--like", str(fresh), "--out", str(other), "--workers", "0", "--overwrite"]) == 0
    assert not (other / "shard-000009.tar").exists() and not (other / "_build").exists()
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    (theirs / "notes.txt").write_text("mine")
    with pytest.raises(ConfigError, match="not a fractalshards dataset"):
        build(small_definition(), str(theirs), workers=0, overwrite=True)
    assert (theirs / "notes.txt").read_text() == "mine"
