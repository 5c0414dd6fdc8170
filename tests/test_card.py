"""Dataset cards: Hugging Face README metadata and Croissant 1.1, written on publish (to the S3 server),
validated and read by the MLCommons reference library, mlcroissant."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from fractalshards.cli import main
from fractalshards.dataset import open_manifest
from fractalshards.png import decode as decode_png
from fractalshards.storage import open_store
from fractalshards.tarformat import read_samples

_READ = """
import json, sys
import numpy as np
import mlcroissant as mlc
ds = mlc.Dataset(jsonld=sys.argv[1])            # validates: raises on an error
out = []
for r in ds.records(record_set="samples"):
    out.append({"key": r["samples/key"].decode(), "label": int(r["samples/label"]),
                "pixels": np.asarray(r["samples/image"].convert("L")).tolist()})  # palette PNG -> grey levels
print(json.dumps(out))
"""


@pytest.fixture
def built(built_dataset) -> Path:
    return built_dataset


def _front_matter(text: str) -> dict:
    assert text.startswith("---\n")
    return yaml.safe_load(text.split("---\n", 2)[1])


def test_publish_writes_a_card_and_croissant_that_mlcroissant_reads(built, s3_bucket, tmp_path):
    bucket, options = s3_bucket
    dest = f"s3://{bucket}/pub"
    assert main(["--no-progress", "publish", str(built), dest, "--tag", "v1"]) == 0
    manifest, store = open_manifest(f"{dest}@v1", options)
    assert manifest.license == "MIT"
    local = tmp_path / "v1"
    local.mkdir()
    for name in ["README.md", "croissant.json", "preview.png", *(s.name for s in manifest.shards)]:
        (local / name).write_bytes(store.read_bytes(name, 1 << 30))
    meta = _front_matter((local / "README.md").read_text())
    assert meta["pretty_name"] == manifest.name and meta["license"] == "mit"
    assert meta["task_categories"] == ["image-classification"] and meta["size_categories"] == ["n<1K"]
    assert {"formula-driven", "synthetic", "webdataset"} <= set(meta["tags"])
    assert meta["configs"][0]["data_files"][0]["path"] == [s.name for s in manifest.shards]
    assert meta["dataset_info"]["splits"][0]["num_examples"] == 12
    body = (local / "README.md").read_text()
    assert "No real image and no personal data" in body and f"build --like {dest}/{manifest.version}" in body
    doc = json.loads((local / "croissant.json").read_text())
    objects = {d["@id"]: d for d in doc["distribution"] if d["@type"] == "cr:FileObject"}
    assert {k: v["sha256"] for k, v in objects.items()} == {s.name: s.sha256 for s in manifest.shards}
    assert doc["license"].endswith("/MIT.html") and doc["conformsTo"] == "http://mlcommons.org/croissant/1.1"

    env = {**os.environ, "CROISSANT_CACHE": str(tmp_path / "croissant-cache")}
    out = subprocess.run(
        [sys.executable, "-c", _READ, str(local / "croissant.json")], capture_output=True, text=True, env=env, timeout=300
    )
    assert out.returncode == 0, out.stderr[-3000:]
    records = {r["key"]: r for r in json.loads(out.stdout)}
    stored = {
        s["__key__"]: s
        for shard in manifest.shards
        for s in read_samples(store.read_bytes(shard.name, shard.bytes, exact=True), shard.name)
    }
    assert set(records) == set(stored) and len(records) == 12
    for key, sample in stored.items():
        assert records[key]["label"] == int(sample["cls"])  # the label field says what .cls says
        assert np.array_equal(np.asarray(records[key]["pixels"], np.uint8), decode_png(sample["png"]))


def test_card_command_writes_elsewhere_and_refuses_a_bad_license(built, tmp_path, capsys):
    out = tmp_path / "card"
    assert main(["--no-progress", "card", str(built), "--out", str(out), "--license", "CC0-1.0"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["README.md", "croissant.json", "preview.png"]
    assert _front_matter((out / "README.md").read_text())["license"] == "cc0-1.0"
    assert not (built / "README.md").exists()
    capsys.readouterr()
    assert main(["--no-progress", "card", str(built), "--out", str(tmp_path / "bad"), "--license", "not a license"]) == 2
    err = capsys.readouterr().err.strip()
    assert "not an SPDX license id" in err and "\n" not in err and not (tmp_path / "bad").exists()
    capsys.readouterr()
    assert (
        main(
            [
                "--no-progress",
                "build",
                "--preset",
                "fractaldb-100",
                "--categories",
                "2",
                "--instances",
                "1",
                "--license",
                "MIT License",
                "--out",
                str(tmp_path / "b"),
                "--workers",
                "0",
            ]
        )
        == 2
    )
    assert not (tmp_path / "b").exists()


def test_an_edited_license_is_refused_when_read(built, tmp_path):
    data = json.loads((built / "manifest.json").read_text())
    assert data["license"] == "MIT"
    data["license"] = "../../etc"
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "manifest.json").write_text(json.dumps(data))
    with pytest.raises(Exception, match="not an SPDX license id"):
        open_manifest(str(bad))
    assert open_store(str(bad)).exists("manifest.json")
