"""Untrusted storage: validated manifests and indexes, no writes outside a root, --like, race-free tags."""

from __future__ import annotations

import copy
import hashlib
import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import fsspec
import pytest
from helpers import reseal, tiny_definition

from fractalshards.builder import build
from fractalshards.catalog import read_index, resolve
from fractalshards.cli import main
from fractalshards.dataset import DatasetManifest
from fractalshards.definition import DatasetDefinition
from fractalshards.errors import ConfigError, ShardIntegrityError, StoredDataError
from fractalshards.families.fractaldb.render import RenderSettings
from fractalshards.presets import load_preset
from fractalshards.publisher import publish
from fractalshards.stream import FractalStream


def _definition(seed: int = 1) -> DatasetDefinition:
    return tiny_definition(6, 3, 5, seed=seed)


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("trust") / "ds"
    build(_definition(), str(out), workers=0)
    return out


def test_a_crafted_manifest_writes_nothing_outside_the_cache(built, tmp_path):
    """The reported attack: version '../..' and an absolute shard name, over memory:// with a cache."""
    fs = fsspec.filesystem("memory")
    manifest = json.loads((built / "manifest.json").read_text())
    target = tmp_path / "x" / "pwned.tar"
    for version, name in (("../../../../../../..", str(target)), (None, str(target)), (None, "../../pwned.tar")):
        m = copy.deepcopy(manifest)
        m["shards"][0]["name"] = name
        m = reseal(m)
        if version is not None:
            m["version"] = version
        fs.pipe("/crafted/manifest.json", json.dumps(m).encode())
        fs.pipe(f"/crafted/{Path(name).name}", (built / "shard-000000.tar").read_bytes())
        with pytest.raises(StoredDataError, match=r"version|shards\[0\]\.name"):
            list(FractalStream("memory://crafted", cache_dir=str(tmp_path / "cache")))
    assert not target.exists() and not (tmp_path / "x").exists()
    assert not any(p.is_file() for p in (tmp_path / "cache").rglob("*")) if (tmp_path / "cache").exists() else True


MUTATIONS = [
    ("shards[1].name", lambda m: m["shards"][1].update(name="a/b.tar")),
    ("shards[1].name", lambda m: m["shards"][1].update(name=".hidden")),
    ("shards[1].name", lambda m: m["shards"][1].update(name="x\x01.tar")),
    ("shards[0].sha256", lambda m: m["shards"][0].update(sha256="XYZ")),
    ("shards[0].samples", lambda m: m["shards"][0].update(samples=-1)),
    ("shards[0].bytes", lambda m: m["shards"][0].update(bytes="12")),
    ("totals.samples", lambda m: m["totals"].update(samples=999)),
    ("version", lambda m: m.update(version="ABCDEF0123456789")),
    ("fingerprint", lambda m: m["definition"].update(seed=9)),
    ("categories", lambda m: m["categories"]["categories"][0]["maps"][0].__setitem__(0, 0.123)),
]


@pytest.mark.parametrize("field,mutate", MUTATIONS, ids=[f"{f}-{i}" for i, (f, _) in enumerate(MUTATIONS)])
def test_every_manifest_field_is_validated(built, field, mutate):
    data = json.loads((built / "manifest.json").read_text())
    DatasetManifest.from_dict(copy.deepcopy(data))  # the genuine one passes
    mutate(data)
    with pytest.raises(StoredDataError) as err:
        DatasetManifest.from_dict(data, source="m.json")
    assert not isinstance(err.value, ConfigError)  # bad stored data, not bad input
    assert isinstance(err.value.__cause__, ConfigError)  # the validator's error, chained
    message = str(err.value)
    assert "\n" not in message and message.startswith("m.json")
    assert field.split(".")[0].split("[")[0] in message or "fingerprint" in message or "content_hash" in message


def test_index_entries_are_validated(built, tmp_path):
    dest = tmp_path / "pub"
    publish(str(built), str(dest), tags=["v1"])
    assert resolve(f"{dest}@v1").endswith(DatasetManifest.from_json((built / "manifest.json").read_text()).version)
    index = json.loads((dest / "index.json").read_text())
    bad = copy.deepcopy(index)
    bad["tags"]["v1"] = "../../../etc"
    (dest / "index.json").write_text(json.dumps(bad))
    with pytest.raises(StoredDataError, match="tags"):
        resolve(f"{dest}@v1")
    bad = copy.deepcopy(index)
    version = next(iter(bad["versions"]))
    bad["versions"][version]["path"] = "/etc"
    (dest / "index.json").write_text(json.dumps(bad))
    with pytest.raises(StoredDataError, match="path"):
        read_index(str(dest))
    (dest / "index.json").write_text("{not json")
    with pytest.raises(StoredDataError, match="not valid JSON"):
        read_index(str(dest))


def test_build_like_reproduces_non_default_settings_byte_for_byte(tmp_path):
    definition = DatasetDefinition(
        categories=load_preset("fractaldb-100").subset(4, name="odd4"),
        instances=3,
        render=RenderSettings(mode="native", size=40, points=2_500, seed=7, pad=5, weight_delta=0.25),
        shard_size=4,
        name="odd",
        png_compress_level=6,
    )
    build(definition, str(tmp_path / "a"), workers=0)
    assert main(["--no-progress", "build", "--like", str(tmp_path / "a"), "--out", str(tmp_path / "b"), "--workers", "0"]) == 0
    files = sorted(p.name for p in (tmp_path / "a").iterdir())
    assert files == sorted(p.name for p in (tmp_path / "b").iterdir())
    for name in files:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    assert main(["--no-progress", "build", "--like", str(tmp_path / "a"), "--seed", "3", "--out", str(tmp_path / "c")]) == 2


_RACER = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from fractalshards.errors import ConfigError
    from fractalshards.publisher import publish
    src, dest, go, tag = sys.argv[1], sys.argv[2], Path(sys.argv[3]), sys.argv[4]
    while not go.exists():
        time.sleep(0.002)
    try:
        publish(src, dest, tags=[tag], say=lambda s: None)
        print("won")
    except ConfigError as exc:
        print("lost:", exc)
""")


def _race(racers: list[tuple[str, str]], dest: str, go: Path) -> list[str]:
    """Start one publisher per ``(source, tag)``, release them at once; their outcomes, in order."""
    procs = [
        subprocess.Popen([sys.executable, "-c", _RACER, src, dest, str(go), tag], stdout=subprocess.PIPE, text=True)
        for src, tag in racers
    ]
    time.sleep(1.0)  # both imported and waiting
    go.write_text("go")
    outs = [p.communicate(timeout=120)[0].strip() for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    return outs


@pytest.mark.parametrize("where", ["local", "s3"])
def test_two_publishers_racing_for_a_new_tag_one_wins(built, tmp_path, where, request):
    other = tmp_path / "other"
    build(_definition(seed=2), str(other), workers=0)
    if where == "s3":
        bucket, _ = request.getfixturevalue("s3_bucket")
        base = f"s3://{bucket}/race"
    else:
        base = str(tmp_path / "race")
    for round_ in range(3):
        go = tmp_path / f"go{round_}"
        outs = _race([(str(built), f"r{round_}"), (str(other), f"r{round_}")], base, go)
        assert sorted(o.split(":")[0] for o in outs) == ["lost", "won"], outs
        lost = next(o for o in outs if o.startswith("lost"))
        assert f"'r{round_}' already names version" in lost
        index = read_index(base)
        winner = index["tags"][f"r{round_}"]
        assert sum(f"r{round_}" in e["tags"] for e in index["versions"].values()) == 1
        assert resolve(f"{base}@r{round_}").endswith(winner)


@pytest.mark.parametrize("where", ["local", "s3"])
def test_two_publishers_of_one_version_with_different_tags_keep_both(built, tmp_path, where, request):
    if where == "s3":
        bucket, _ = request.getfixturevalue("s3_bucket")
        base = f"s3://{bucket}/same"
    else:
        base = str(tmp_path / "same")
    for round_ in range(3):
        outs = _race([(str(built), f"a{round_}"), (str(built), f"b{round_}")], base, tmp_path / f"go{round_}")
        assert outs == ["won", "won"], outs
        index = read_index(base)
        version = index["latest"]
        assert {f"a{round_}", f"b{round_}"} <= set(index["versions"][version]["tags"]), index["versions"][version]
        assert index["tags"][f"a{round_}"] == index["tags"][f"b{round_}"] == version


def test_claimed_tag_is_refused_and_force_moves_it(built, tmp_path):
    other = tmp_path / "other"
    build(_definition(seed=3), str(other), workers=0)
    dest = str(tmp_path / "pub")
    first = publish(str(built), dest, tags=["stable"]).version
    with pytest.raises(ConfigError, match="'stable' already names version"):
        publish(str(other), dest, tags=["stable"])
    second = publish(str(other), dest, tags=["stable"], force=True).version
    assert read_index(dest)["tags"]["stable"] == second != first
    assert hashlib.sha256(Path(dest, "tags", "stable").read_bytes()).hexdigest() == hashlib.sha256(second.encode()).hexdigest()


def _flip(data: bytes, rng) -> bytes:
    out = bytearray(data)
    if rng.random() < 0.5 and len(out) > 1:
        return bytes(out[: rng.randrange(len(out))])  # truncated
    for _ in range(rng.randint(1, 3)):
        out[rng.randrange(len(out))] ^= 1 << rng.randrange(8)
    return bytes(out)


def _samples(url: str) -> list[tuple]:
    return [(s["__key__"], s.get("png"), s.get("cls"), s.get("json")) for s in FractalStream(url, shuffle=False, decode="raw")]


def test_fuzzed_shards_manifests_and_indexes_give_the_samples_or_a_documented_error(built, tmp_path):
    """A few hundred random truncations and bit flips, read with default settings."""
    import random
    import shutil

    rng = random.Random(1234)
    dest = tmp_path / "pub"
    publish(str(built), str(dest), tags=["v1"])
    version = resolve(f"{dest}@v1").rsplit("/", 1)[1]
    genuine = _samples(f"{dest}@v1")
    decoded = [label for _, label in FractalStream(f"{dest}@v1", shuffle=False)]
    targets = [f"{version}/{p.name}" for p in sorted((dest / version).glob("shard-*.tar"))] + [
        f"{version}/manifest.json",
        "index.json",
    ]
    outcomes = {"same": 0, "ShardIntegrityError": 0, "StoredDataError": 0}
    for case in range(240):
        work = tmp_path / f"case{case % 2}"
        shutil.rmtree(work, ignore_errors=True)
        shutil.copytree(dest, work)
        target = targets[case % len(targets)]
        path = work / target
        path.write_bytes(_flip(path.read_bytes(), rng))
        try:
            got = _samples(f"{work}@v1")
            labels = [label for _, label in FractalStream(f"{work}@v1", shuffle=False)]
        except StoredDataError as exc:  # a damaged manifest or index
            assert Path(target).name in str(exc) or "index" in str(exc), (target, str(exc))
            outcomes["StoredDataError"] += 1
            continue
        except ShardIntegrityError as exc:  # a damaged shard
            assert Path(target).name in str(exc), (target, str(exc))
            outcomes["ShardIntegrityError"] += 1
            continue
        assert got == genuine and labels == decoded, target  # never a wrong sample
        outcomes["same"] += 1
    assert outcomes["ShardIntegrityError"] > 50 and outcomes["StoredDataError"] > 30, outcomes
