"""PNG encoders: the direct 1-bit writer against Pillow, and datasets built with either."""

from __future__ import annotations

import io
import json
import os
import tarfile

import numpy as np
import pytest
import webdataset as wds
from helpers import reseal
from PIL import Image

from fractalshards import png
from fractalshards.builder import build
from fractalshards.cli import main
from fractalshards.definition import DatasetDefinition
from fractalshards.errors import StoredDataError
from fractalshards.families.fractaldb.instances import Instance
from fractalshards.families.fractaldb.render import RenderSettings, render
from fractalshards.png import decode as decode_png
from fractalshards.presets import load_preset
from fractalshards.stream import FractalStream
from fractalshards.verifier import verify


def _reference_render(size: int = 362, **kwargs) -> np.ndarray:
    m = load_preset("fractaldb-100")
    return render(m.category(5).system, 5, Instance(9, 3, 7), RenderSettings(mode="official", size=size, **kwargs))


def _pillow_pixels(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as im:
        return np.asarray(im.convert("L") if im.mode in ("P", "L") else im.convert("RGB"))


def test_direct_png_decodes_to_the_same_pixels_as_pillows_and_is_no_larger():
    out = _reference_render()
    assert out.bits is not None
    direct = png.encode(out.bits, 1, "direct")
    pillow = png.encode(out.image, 1, "pillow")
    assert direct != pillow  # another encoder: other bytes...
    for data in (direct, pillow):  # ...the same pixels, whoever decodes them
        np.testing.assert_array_equal(decode_png(data), out.image)
        np.testing.assert_array_equal(_pillow_pixels(data), out.image)
        with Image.open(io.BytesIO(data)) as im:
            assert (im.mode, im.size) == ("P", (362, 362))
    assert len(direct) <= len(pillow)
    assert direct[24:26] == b"\x01\x03"  # IHDR: 1 bit, palette


@pytest.mark.parametrize("width", [1, 7, 8, 9, 33, 362])
def test_kernel_scanlines_and_packed_arrays_give_the_same_bytes(width):
    rng = np.random.default_rng(width)
    img = (rng.random((13, width)) < 0.4).astype(np.uint8) * 127
    packed = png.two_level(img)
    assert packed is not None and packed.count() == np.count_nonzero(img)
    np.testing.assert_array_equal(packed.unpack(), img)
    data = png.encode(img, 1, "direct")
    assert data == png.encode(packed, 1, "direct")
    np.testing.assert_array_equal(_pillow_pixels(data), img)
    if width == 362:  # the render kernel's own scanlines: the same bytes as packing its pixels
        out = _reference_render()
        assert png.encode(out.bits, 1, "direct") == png.encode(out.image, 1, "direct")


def test_grey_and_colour_images_decode_the_same_from_either_encoder():
    ramp = np.arange(256 * 3, dtype=np.int64).reshape(24, 32) % 251
    ramp = ramp.astype(np.uint8)
    colour = _reference_render(color="color").image
    blank = np.zeros((10, 10), np.uint8)
    assert png.two_level(ramp) is None and png.two_level(colour) is None
    two = (np.arange(300 * 17).reshape(17, 300) % 7 == 0).astype(np.uint8) * 200
    for img in (ramp, colour, blank, two):
        encoded = [png.encode(img, 1, encoder) for encoder in png.ENCODERS]
        assert len(set(encoded)) == len(encoded)  # three encoders, three streams...
        for data in encoded:  # ...one image, whoever decodes it
            np.testing.assert_array_equal(decode_png(data), img)
            np.testing.assert_array_equal(_pillow_pixels(data), img)
        for encoder in png.ENCODERS:  # and masks: 8-bit grey whatever their values
            np.testing.assert_array_equal(
                _pillow_pixels(png.encode_grey8(img if img.ndim == 2 else img[..., 0], 1, encoder)),
                img if img.ndim == 2 else img[..., 0],
            )
    assert png.encode(two, 1, "portable")[24:26] == b"\x01\x03"  # two-level: 1-bit palette, as direct
    assert png.encode(colour, 1, "direct")[25] == 2 and png.encode(ramp, 1, "direct")[24:26] == b"\x08\x00"
    with pytest.raises(ValueError, match="encoder"):
        png.encode(ramp, 1, "fast")
    with pytest.raises(ValueError, match="uint8"):
        png.encode(ramp.astype(np.uint16) * 300, 1, "direct")


@pytest.mark.parametrize("preset", ["visualatom-1k", "rcdb-1k"])
def test_direct_png_of_contour_renders_is_lossless_and_no_larger(preset):
    manifest = load_preset(preset, categories=3)
    family = manifest.family
    settings = family.render_settings(manifest, {})
    for category in range(3):
        img = family.render(manifest, category, 17 * category, settings).image
        direct, pillow = png.encode(img, 1, "direct"), png.encode(img, 1, "pillow")
        np.testing.assert_array_equal(decode_png(direct), img)
        np.testing.assert_array_equal(_pillow_pixels(direct), img)
        assert len(direct) <= len(pillow)


def _vectors() -> dict:
    with open(os.path.join(os.path.dirname(__file__), "vectors", "fractaldb-legacy-build.json")) as fh:
        return json.load(fh)


def _legacy_definition(mode: str, **kwargs) -> DatasetDefinition:
    # The definition behind tests/vectors/fractaldb-legacy-build.json, built with commit b9aef76.
    return DatasetDefinition(
        categories=load_preset("fractaldb-100"),
        instances=3,
        shard_size=100,
        render=RenderSettings(mode=mode, size=64, points=3000, seed=1 if mode == "official" else 0),
        **kwargs,
    )


@pytest.mark.parametrize("mode", ["official", "native"])
def test_pillow_encoder_rebuilds_datasets_of_before_byte_for_byte(tmp_path, mode):
    # Shard hashes recorded with the byte-canvas renderer and Pillow encoder (commit b9aef76,
    # Pillow 13.0.0 and zlib 1.2.13 here): a definition stored without an encoder rebuilds them.
    expected = _vectors()[mode]
    legacy = _legacy_definition(mode, png_encoder="pillow", definition_format=1)
    assert "encoder" not in legacy.to_dict()["png"] and legacy.fingerprint == expected["fingerprint"]
    build(legacy, str(tmp_path), workers=0)
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert {s["name"]: s["sha256"] for s in manifest["shards"]} == expected["shards"]
    assert manifest["generator"]["png_libraries"]["zlib"]
    new = _legacy_definition(mode, definition_format=1)
    assert new.to_dict()["png"]["encoder"] == "portable" and new.fingerprint != expected["fingerprint"]


def test_old_datasets_still_verify_and_stream_the_same_pixels_as_new_ones(tmp_path, capsys):
    old, new = tmp_path / "old", tmp_path / "new"
    build(_legacy_definition("native", png_encoder="pillow", definition_format=1), str(old), workers=0)
    build(_legacy_definition("native"), str(new), workers=0)
    assert main(["--no-progress", "verify", str(old), "--render-sample", "20"]) == 0
    report = verify(str(new), render_sample=20)
    assert report.ok and report.rendered == 20
    old_samples = list(FractalStream(str(old), shuffle=False, decode="numpy"))
    new_samples = list(FractalStream(str(new), shuffle=False, decode="numpy"))
    assert len(old_samples) == len(new_samples) == 300
    for (a, la), (b, lb) in zip(old_samples, new_samples):
        assert la == lb
        np.testing.assert_array_equal(a, b)
    # Shards of both read with plain webdataset and tar, PNGs with Pillow.
    for folder in (old, new):
        with tarfile.open(folder / "shard-000000.tar") as tar:
            assert len(tar.getnames()) == 300
        sample = next(iter(wds.WebDataset(str(folder / "shard-000000.tar"), shardshuffle=False)))
        assert _pillow_pixels(sample["png"]).shape == (64, 64)
    old_bytes = sum(p.stat().st_size for p in old.glob("shard-*.tar"))
    new_bytes = sum(p.stat().st_size for p in new.glob("shard-*.tar"))
    assert new_bytes <= old_bytes


def test_a_manifest_naming_an_unknown_encoder_is_refused_in_one_line(tmp_path):
    build(_legacy_definition("native"), str(tmp_path), workers=0)
    path = tmp_path / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest["definition"]["png"]["encoder"] = "turbo"
    path.write_text(json.dumps(reseal(manifest)))
    with pytest.raises(StoredDataError, match="png_encoder") as err:
        verify(str(tmp_path))
    assert "\n" not in str(err.value)


def test_build_flag_chooses_the_encoder_and_like_keeps_it(tmp_path):
    out, again = tmp_path / "a", tmp_path / "b"
    assert (
        main(
            [
                "--no-progress",
                "build",
                "--preset",
                "fractaldb-100",
                "--categories",
                "4",
                "--instances",
                "2",
                "--size",
                "48",
                "--points",
                "2000",
                "--png-encoder",
                "pillow",
                "--workers",
                "0",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["definition"]["png"]["encoder"] == "pillow"  # format 2 names every encoder
    assert main(["--no-progress", "build", "--like", str(out), "--workers", "0", "--out", str(again)]) == 0
    assert json.loads((again / "manifest.json").read_text())["fingerprint"] == manifest["fingerprint"]


_ENCODE_WITH = r"""
import hashlib, json, sys, tempfile
if sys.argv[1] == "zlib-ng":  # this process's zlib is zlib-ng's, as on a distribution that ships it
    from zlib_ng import zlib_ng
    sys.modules["zlib"] = zlib_ng
import numpy as np
from fractalshards import png
from fractalshards.builder import build
from fractalshards.definition import DatasetDefinition
rng = np.random.default_rng(0)
images = {
    "two-level": (rng.random((96, 96)) > 0.8).astype(np.uint8) * 127,
    "grey": (rng.random((96, 96)) * 255).astype(np.uint8) // 16 * 16,
    "colour": (rng.random((48, 48, 3)) * 255).astype(np.uint8) // 32 * 32,
}
out = {f"{enc} {name}": hashlib.sha256(png.encode(img, 1, enc)).hexdigest()
       for enc in ("direct", "portable") for name, img in images.items()}
with tempfile.TemporaryDirectory() as tmp:  # a new definition (the default encoder), built whole
    d = DatasetDefinition.from_preset("rcdb-1k", categories=2, instances=2, shard_size=2)
    build(d, tmp, workers=0)
    out["shards"] = [s["sha256"] for s in json.load(open(tmp + "/manifest.json"))["shards"]]
print(json.dumps(out))
"""


def test_portable_bytes_are_the_same_whichever_zlib_the_process_has():
    import subprocess
    import sys

    runs = {}
    for zlib_module in ("zlib", "zlib-ng"):
        done = subprocess.run([sys.executable, "-c", _ENCODE_WITH, zlib_module], capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-2000:]
        runs[zlib_module] = json.loads(done.stdout.strip().splitlines()[-1])
    std, ng = runs["zlib"], runs["zlib-ng"]
    assert {k: v for k, v in std.items() if k.startswith("portable")} == {k: v for k, v in ng.items() if k.startswith("portable")}
    assert std["shards"] == ng["shards"]  # a new definition's shards: the same on either machine
    assert any(std[k] != ng[k] for k in std if k.startswith("direct"))  # what the default was: not the same
