"""SegRCDB: the official classes, images and masks (the reference's vectors and a plain-Python replay of
the official script), native streams, and a segmentation dataset built, verified and streamed."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import official_segrcdb as oracle
import PIL
import pytest
import torch
from helpers import VECTORS
from PIL import Image

from fractalshards.categories import CategoryManifest
from fractalshards.definition import DatasetDefinition
from fractalshards.errors import ConfigError
from fractalshards.families import get_family
from fractalshards.presets import load_preset

SEG_VECTORS = VECTORS / "fdsl-3d-seg-vectors.txt"  # a copy of ../shared/
FAM = get_family("segrcdb")


def _sha(a: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()


def _vector(prefix: str) -> dict:
    # "official 000000 image ... grey_sha256=..." -> {"grey_sha256": ..., "nonzero": ...}
    for line in SEG_VECTORS.read_text().splitlines():
        if line.startswith(prefix):
            return dict(part.split("=", 1) for part in line.split() if "=" in part)
    raise KeyError(prefix)


def _csv_of(manifest, g: int) -> bytes:
    p = FAM.category_to_dict(manifest.category(g))
    row = dict(zip(oracle.FIELDS, (g + 1, p["vertices"], p["perlin"], p["line_width"], p["radius"], p["lines"])))
    row.update(Oval_rate_x=p["oval_x"], Oval_rate_y=p["oval_y"], Color_Gray=g + 1)
    return oracle.csv_bytes(row)


def test_the_preset_holds_the_official_classes_byte_for_byte():
    manifest = load_preset("segrcdb")
    assert len(manifest) == 254 and FAM.num_classes(manifest) == 255
    digests = {1: "de5c66befc3a8788b2404a30f3e41fda003a24569e5654eb0f24fe05799d9ee1",
               2: "b0f2628e77510ee6582404be1865e4444ec695a73c1310659ceccf575ae5b6ab",
               254: "2c6face3bf23793f9abfc812f3d19a10794cb7062f6b3b2d0aa12c7e7567ec26"}  # fmt: skip
    for g, digest in digests.items():
        assert hashlib.sha256(_csv_of(manifest, g - 1)).hexdigest() == digest
    everything = b"".join(_csv_of(manifest, g) for g in range(254))
    assert hashlib.sha256(everything).hexdigest() == "e8bbce1a55dfc4fe4f12d8350a6b0e6332f3ebe71d0306dfb131fe1905fb5cfc"
    # The committed set is what an official search gives, and the oracle's.
    fresh = FAM.search(254, mode="official", seed=0, settings=FAM.search_settings({}))
    assert [c.params for c in fresh.categories] == [manifest.category(g).params for g in range(254)]


def test_official_images_and_masks_equal_the_vectors_and_the_official_script():
    d = DatasetDefinition.from_preset("segrcdb", instances=20_000)
    for k in (0, 1):
        out = d.renderer.render(0, k)
        image, mask = _vector(f"official {k:06d} image"), _vector(f"official {k:06d} mask")
        assert _sha(out.image) == image["grey_sha256"] and np.count_nonzero(out.image) == int(image["nonzero"])
        assert _sha(out.mask) == mask["sha256"] and len(np.unique(out.mask)) == int(mask["nvals"])
    # Other processes (random.seed(t + 1)), out of order, against the official algorithm run as Python.
    params = oracle.classes()
    for k in (19_501, 500, 19_500):
        process, at = divmod(k, 500)
        expected = oracle.images(params, process, at + 1)[at]
        out = d.renderer.render(0, k)
        assert np.array_equal(out.image, expected[0]) and np.array_equal(out.mask, expected[1]), k


def _manifest(count: int, mode: str, seed: int) -> CategoryManifest:
    settings = FAM.search_settings({})
    found = FAM.search(count, mode=mode, seed=seed, settings=settings)
    return CategoryManifest.from_search(f"segrcdb-{mode}", mode, seed, settings, found, mode, family="segrcdb")


def _tiny(mode: str) -> DatasetDefinition:
    # The reference's tiny configuration: 2 classes, one process of 2 images of 128 px, 2 instances each.
    manifest = _manifest(2, "official", 0)
    render = {"size": 128, "instances_per_image": 2, "images_per_process": 2, "mask_mode": mode}
    return DatasetDefinition.from_manifest(manifest, instances=2, render=render)


@pytest.mark.parametrize("mode", ["M1", "M2", "M3"])
def test_mask_modes_equal_the_official_script(mode):
    d = _tiny(mode)
    expected = oracle.images(oracle.classes(2), 0, 2, size=128, instances=2, mode=mode)
    for k in (0, 1):
        out = d.renderer.render(0, k)
        assert _sha(out.image) == _vector(f"tiny image {k:06d}")["grey_sha256"]
        assert np.array_equal(out.mask, expected[k][1])
        vector = _vector(f"tiny {mode} mask {k:06d} (Pillow 9.0.0)")["sha256"]
        if mode == "M3" and k == 0 and not PIL.__version__.startswith("9."):
            # Pillow's polygon fill changed after 9 (one pixel): the reference gives 13.0.0's too.
            vector = (
                "f6c70bfe0465a6a10d400c164929cf8f95fab9c9e18e16a9795ccdb8c331d32a" if PIL.__version__.startswith("13.") else None
            )
        if vector is not None:
            assert _sha(out.mask) == vector, (mode, k)


def test_the_cli_renders_an_official_image_and_its_mask(tmp_path):
    exe = str(Path(sys.executable).parent / "fractalshards")
    img, mask = tmp_path / "img.png", tmp_path / "mask.png"
    run = [exe, "render", "--preset", "segrcdb", "--instance", "1", "--out", str(img), "--mask-out", str(mask)]
    done = subprocess.run(run, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    with Image.open(img) as a, Image.open(mask) as b:
        assert a.mode == "L" and b.mode == "L"
        assert _sha(np.asarray(a)) == _vector("official 000001 image")["grey_sha256"]
        assert _sha(np.asarray(b)) == _vector("official 000001 mask")["sha256"]
    fractal = ["render", "--preset", "fractaldb-1k", "--category", "0", "--instance", "0", "--out", str(tmp_path / "x.png")]
    bad = subprocess.run([exe, *fractal, "--mask-out", str(tmp_path / "m.png")], capture_output=True, text=True)
    assert bad.returncode != 0 and "have no mask" in bad.stderr and len(bad.stderr.strip().splitlines()) == 1


def test_native_streams_are_deterministic_and_masks_label_every_line():
    manifest = _manifest(40, "native", 3)
    d = DatasetDefinition.from_manifest(manifest, instances=100, render={"size": 96, "instances_per_image": 6})
    a = d.renderer.render(0, 7)
    again = d.renderer.render(0, 7)
    other = d.renderer.render(0, 8)
    assert np.array_equal(a.image, again.image) and np.array_equal(a.mask, again.mask)
    assert not np.array_equal(a.image, other.image)
    assert a.mask.max() <= 40 and np.count_nonzero(a.mask) > 0
    assert not np.any(a.image[a.mask == 0])  # a grey pixel is always on a labelled line
    assert set(np.unique(a.mask)) - {0} <= set(a.info["classes"])
    # In another process (no shared state): the same bytes.
    code = (
        "import sys; sys.path[:0] = sys.argv[1:]; import test_segrcdb as t; "
        "from fractalshards.definition import DatasetDefinition; "
        "d = DatasetDefinition.from_manifest(t._manifest(40, 'native', 3), instances=100, "
        "render={'size': 96, 'instances_per_image': 6}); "
        "r = d.renderer.render(0, 7); sys.stdout.write(r.image.tobytes().hex() + ' ' + r.mask.tobytes().hex())"
    )
    here = [str(Path(__file__).parent), str(Path(__file__).parents[1])]
    done = subprocess.run([sys.executable, "-c", code, *here], capture_output=True, text=True, timeout=300, check=True)
    image_hex, mask_hex = done.stdout.split()
    assert image_hex == a.image.tobytes().hex() and mask_hex == a.mask.tobytes().hex()


def test_bad_settings_are_one_line_errors():
    manifest = load_preset("segrcdb")
    for options, match in (
        ({"mask_mode": "M4"}, "mask_mode"),
        ({"instances_per_image": 0}, "instances_per_image"),
        ({"size": 0}, "size"),
    ):
        with pytest.raises(ConfigError, match=match) as err:
            DatasetDefinition.from_manifest(manifest, instances=10, render=options)
        assert "\n" not in str(err.value)
    with pytest.raises(ConfigError, match="at most 255"):
        FAM.search(300, mode="native", seed=0, settings=FAM.search_settings({}))
    native = _manifest(3, "native", 0)
    with pytest.raises(ConfigError, match="--mode native"):
        DatasetDefinition.from_manifest(native, instances=3, render={"mode": "official"})


def test_a_segmentation_dataset_builds_verifies_and_streams_images_with_their_masks(tmp_path):
    import webdataset as wds

    from fractalshards.builder import build
    from fractalshards.loader import FractalLoader
    from fractalshards.stream import FractalStream
    from fractalshards.verifier import verify

    d = DatasetDefinition.from_preset("segrcdb", instances=12, shard_size=5, render={"size": 128})
    assert d.png_encoder == "portable"  # the family's encoder; one named wins
    assert DatasetDefinition.from_preset("segrcdb", instances=12, png_encoder="direct").png_encoder == "direct"
    result = build(d, str(tmp_path / "ds"), workers=0, log_fn=lambda s: None)
    assert result.manifest.totals["samples"] == 12 and len(result.manifest.shards) == 3
    assert result.manifest.definition_data["png"]["encoder"] == "portable"
    report = verify(str(tmp_path / "ds"), render_sample=4)
    assert report.ok, report.problems
    # The real webdataset reads the members; the masks are 8-bit class ids of the image's size.
    first = tmp_path / "ds" / result.manifest.shards[0].name
    sample = next(iter(wds.WebDataset(str(first), shardshuffle=False)))
    assert {"json", "png", "seg.png"} <= set(sample) and "cls" not in sample
    with Image.open(__import__("io").BytesIO(sample["seg.png"])) as m:
        assert m.mode == "L" and m.size == (128, 128)
    record = json.loads(sample["json"])
    assert record["category"] == 0 and len(record["classes"]) == 32
    # The stream yields (image, mask), the same from the shards and rendered from the definition.
    stored = list(FractalStream(str(tmp_path / "ds"), shuffle=False, decode="numpy"))
    rendered = list(FractalStream(str(tmp_path / "ds"), shuffle=False, decode="numpy", source="render"))
    assert len(stored) == 12
    for (a, m), (b, n) in zip(stored, rendered):
        assert a.shape == (128, 128, 3) and m.shape == (128, 128) and m.dtype == np.uint8
        assert np.array_equal(a, b) and np.array_equal(m, n)
        assert not np.any(a[m == 0])  # image and mask aligned
    loader = FractalLoader(FractalStream(str(tmp_path / "ds"), decode="packed"), batch_size=4)
    images, masks = next(iter(loader))
    assert images.shape == (4, 128, 128) and masks.shape == (4, 128, 128) and masks.dtype == torch.uint8
    # A shard whose mask was swapped for another size is refused, even re-signed.
    from helpers import forge_shard

    def swap(members):
        small = __import__("io").BytesIO()
        Image.new("L", (64, 64)).save(small, format="PNG")
        return [(n, small.getvalue() if n.endswith(".seg.png") else b) for n, b in members]

    forge_shard(tmp_path / "ds", result.manifest.shards[1].name, swap)
    with pytest.raises(Exception, match="mask header"):
        list(FractalStream(str(tmp_path / "ds"), shuffle=False, decode="numpy"))


def _locate(source_image, source_mask, crop_image, crop_mask):
    # The offset and flip at which ``crop_image`` was cut from ``source_image``; the mask must be cut alike.
    size = crop_image.shape[-1]
    h, w = source_image.shape
    for y in range(h - size + 1):
        for x in range(w - size + 1):
            for flip in (False, True):
                cut = source_image[y : y + size, x : x + size]
                cut = cut.flip(-1) if flip else cut
                if torch.equal(cut, crop_image):
                    cut_mask = source_mask[y : y + size, x : x + size]
                    assert torch.equal(cut_mask.flip(-1) if flip else cut_mask, crop_mask)
                    return y, x, flip
    raise AssertionError("crop not found in its source")


@pytest.mark.parametrize("resized", [False, True])
def test_the_device_transform_crops_and_flips_each_mask_as_its_image(resized):
    from fractalshards.augment import AugmentConfig, DeviceTransform

    d = DatasetDefinition.from_preset("segrcdb", instances=8, render={"size": 48})
    renders = [d.renderer.render(0, k) for k in range(8)]
    images = torch.from_numpy(np.stack([r.image for r in renders]))
    masks = torch.from_numpy(np.stack([r.mask for r in renders]))
    if resized:  # whole-image boxes (scale 1, ratio 1): the resize is the identity, the flips remain
        config = AugmentConfig(crop=48, resized_crop=True, scale=(1.0, 1.0), ratio=(1.0, 1.0), mean=0.0, std=1.0, channels=1)
    else:
        config = AugmentConfig(crop=40, mean=0.0, std=1.0, channels=1)
    x, targets = DeviceTransform(config, d.packed_layout)(images, "cpu", torch.Generator().manual_seed(3), masks=masks)
    assert x.shape == (8, 1, config.crop, config.crop) and targets.shape == (8, config.crop, config.crop)
    assert targets.dtype == torch.int64
    pixels = (x[:, 0] * 255).round().to(torch.uint8)
    flips = [_locate(images[i], masks[i], pixels[i], targets[i].to(torch.uint8))[2] for i in range(8)]
    assert any(flips) and not all(flips)
    # Without masks the same call gives the same images (the masks change nothing of the input).
    alone = DeviceTransform(config, d.packed_layout)(images, "cpu", torch.Generator().manual_seed(3))
    assert torch.equal(alone, x)
    evaluation = DeviceTransform(config, d.packed_layout)(images, "cpu", None, masks=masks)[1]
    off = (48 - config.crop) // 2
    assert torch.equal(evaluation, masks[:, off : off + config.crop, off : off + config.crop].to(torch.int64))


def test_ray_data_rows_carry_images_and_masks(tmp_path):
    import ray

    from fractalshards.builder import build, ray_init_local
    from fractalshards.raydata import read_dataset

    d = DatasetDefinition.from_preset("segrcdb", instances=4, shard_size=2, render={"size": 32})
    build(d, str(tmp_path / "ds"), workers=0, log_fn=lambda s: None)
    ray_init_local(1)
    try:
        decoded = read_dataset(str(tmp_path / "ds")).take_all()
        raw = read_dataset(str(tmp_path / "ds"), decode=False).take_all()
    finally:
        ray.shutdown()
    assert len(decoded) == len(raw) == 4 and all("label" not in r for r in decoded + raw)
    truth = {f"000000-{k:04d}": d.renderer.render(0, k) for k in range(4)}
    for row in decoded:
        assert np.array_equal(row["image"], truth[row["key"]].image) and np.array_equal(row["mask"], truth[row["key"]].mask)
    assert all(r["png"][:4] == b"\x89PNG" and r["mask_png"][:4] == b"\x89PNG" for r in raw)


def test_previews_show_each_image_beside_its_mask_in_a_palette():
    from fractalshards.kinds.segmentation import PALETTE
    from fractalshards.preview import preview_grid

    d = DatasetDefinition.from_preset("segrcdb", instances=8, render={"size": 64})
    grid = np.asarray(preview_grid(d.categories, range(2), range(3), d.render, tile=64))
    cell_h = 64 + 12 + 6  # a tile, its label, the gap
    top = grid.shape[0] - 2 * cell_h  # under the title (wrapped to the grid's width: its lines vary)
    assert grid.shape[1] == 6 + 3 * (128 + 6)  # 3 tiles of an image and its mask, each twice as wide as tall
    out = d.renderer.render(0, 0)
    tile = grid[top : top + 64, 6 : 6 + 128]  # the first tile
    assert np.array_equal(tile[:, :64, 0], out.image)  # grey image on the left
    assert np.array_equal(tile[:, 64:], PALETTE[out.mask])  # the mask's classes in colour on the right
