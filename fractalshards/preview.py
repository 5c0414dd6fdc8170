"""Labelled preview grids: categories as rows, instances as columns."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from .categories import CategoryManifest
from .errors import ConfigError, check_choice
from .families import Family, Renderer, get_family
from .kinds import SampleFormat, SampleKind, get_kind
from .progress import bar as progress_bar
from .results import DIVERGED_MEANING, Rendered

__all__ = [
    "Tile",
    "rendered_picture",
    "preview_instances",
    "grid_image",
    "preview_grid",
    "preview_manifest",
    "preview_from_dataset",
    "grid_from_shards",
    "DIVERGED_MODES",
    "DIVERGED_MEANING",
]

_BACKGROUND = (24, 24, 24)
_TEXT = (230, 230, 230)
_DIVERGED = (220, 60, 50)
#: What a grid does with diverged samples (the chaos game ran off to infinity: the official NaN rule
#: drops those points, and the image is near-blank): ``mark`` frames them in red and says so,
#: ``skip`` shows the next sample instead, ``show`` shows them as any other.
DIVERGED_MODES = ("mark", "skip", "show")


def _format(renderer: Renderer) -> SampleFormat:
    return SampleFormat(renderer.image_shape, renderer.family.grey_level(renderer.settings))


def rendered_picture(kind: SampleKind, rendered: Rendered, fmt: SampleFormat) -> np.ndarray:
    """A preview tile of a fresh render: its kind's picture (an image; an image beside its mask; a
    point cloud's projection)."""
    return kind.picture(kind.rendered_arrays(rendered, fmt, "numpy"))


@dataclass
class Tile:
    """One picture of the grid with its labels (``diverged``: framed in red when the grid marks them)."""

    image: np.ndarray
    category: int
    label: str
    instance: int = 0
    diverged: bool = False


def preview_instances(count: int, family: Family | str, available: int | None = None) -> list[int]:
    """``count`` distinct instance indices that show the family's variety (its
    :meth:`~fractalshards.families.Family.preview_instances`), among the first ``available``
    (default: the family's whole space)."""
    family = get_family(family) if isinstance(family, str) else family
    available = family.instances_per_category if available is None else available
    if not isinstance(count, int) or not 1 <= count <= available:
        raise ConfigError(f"instances: {count!r} is out of range for the {family.name} family; use an integer in 1..{available}")
    return family.preview_instances(count, available)


def _font(size: int) -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1 has one fixed-size default font
        return ImageFont.load_default()


def _fit(draw: ImageDraw.ImageDraw, text: str, width: int, size: int) -> tuple[list[str], ImageFont.ImageFont]:
    """``text`` in lines that fit ``width`` pixels: split at spaces, the font shrunk to 10 px first."""
    for px in range(size, 9, -1):
        font = _font(px)
        if draw.textlength(text, font=font) <= width:
            return [text], font
    font = _font(10)
    lines, line = [], ""
    for word in text.split(" "):
        trial = f"{line} {word}".strip()
        if line and draw.textlength(trial, font=font) > width:
            lines.append(line)
            line = word
        else:
            line = trial
    return [*lines, line], font


def _one_line(draw: ImageDraw.ImageDraw, text: str, width: int, size: int) -> tuple[str, ImageFont.ImageFont]:
    """``text`` on one line of at most ``width`` pixels: the font shrunk to 10 px, then the text cut."""
    for px in range(int(size), 9, -1):
        font = _font(px)
        if draw.textlength(text, font=font) <= width:
            return text, font
    while len(text) > 1 and draw.textlength(text + "…", font=font) > width:
        text = text[:-1]
    return text + "…", font


def grid_image(rows: list[list[Tile]], tile: int = 128, title: str = "", row_labels: bool = True) -> Image.Image:
    """Lay out rows of tiles with a label under each tile, the category left of each row
    (unless ``row_labels`` is false) and a title on top, wrapped to the grid's width. A diverged
    tile is framed in red and its label says so."""
    if not rows or not rows[0]:
        raise ConfigError("preview: nothing to show; ask for at least one category and one instance")
    cols = max(len(r) for r in rows)
    label_h = max(12, tile // 8)
    left = 64 if row_labels else 6
    first = rows[0][0].image
    width = max(1, round(tile * first.shape[1] / first.shape[0]))  # an image and its mask: twice as wide
    cell_w, cell_h = width + 6, tile + label_h + 6
    total_w = left + cols * cell_w
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    title_lines, title_font = _fit(measure, title, total_w - 12, 16) if title else ([], None)
    top = 6 + 20 * len(title_lines) + (2 if title_lines else 0)
    canvas = Image.new("RGB", (total_w, top + len(rows) * cell_h), _BACKGROUND)
    draw = ImageDraw.Draw(canvas)
    font = _font(max(10, label_h - 2))
    for k, line in enumerate(title_lines):
        draw.text((6, 6 + 20 * k), line, fill=_TEXT, font=title_font)
    for r, row in enumerate(rows):
        y = top + r * cell_h
        if row_labels:
            draw.text((6, y + tile // 2 - 6), f"cat {row[0].category}", fill=_TEXT, font=font)
        for c, t in enumerate(row):
            x = left + c * cell_w
            img = Image.fromarray(t.image).convert("RGB")
            if img.size != (width, tile):
                img = img.resize((width, tile), Image.Resampling.BOX)
            canvas.paste(img, (x, y))
            label, label_font = _one_line(draw, f"diverged {t.label}" if t.diverged else t.label, width, font.size)
            draw.text((x, y + tile + 1), label, fill=_DIVERGED if t.diverged else _TEXT, font=label_font)
            if t.diverged:
                draw.rectangle((x - 2, y - 2, x + width + 1, y + tile + 1), outline=_DIVERGED, width=2)
    return canvas


def preview_grid(
    manifest: CategoryManifest,
    categories: Iterable[int],
    instances: Iterable[int],
    settings: object,
    *,
    tile: int = 128,
    progress: bool = False,
    diverged: str = "mark",
) -> Image.Image:
    """Render ``instances`` of each of ``categories`` into a labelled grid image (any family); diverged
    renders are marked, skipped (the family's next instances take their place) or shown
    (:data:`DIVERGED_MODES`)."""
    check_choice("diverged", diverged, DIVERGED_MODES)
    family = manifest.family
    cats = list(categories)
    insts = [family.check_instance(i) for i in instances]
    title = f"{manifest.name} ({family.name})  {family.describe_settings(settings)}"
    renderer = family.renderer(manifest, settings)
    kind, fmt = get_kind(family.sample_kind), _format(renderer)
    if family.sample_groups(manifest) == 1:  # samples of one group (segmentation images): rows of its samples
        grid = []
        for r in range(len(cats)):
            row = []
            for c in range(len(insts)):
                k = family.check_instance(r * len(insts) + c)
                picture = rendered_picture(kind, renderer.render(0, k), fmt)
                row.append(Tile(picture, 0, family.instance_label(k), k))
            grid.append(row)
        return grid_image(grid, tile=tile, title=title, row_labels=False)
    rows: list[list[Tile]] = []
    bar = progress_bar(total=len(cats) * len(insts), desc="preview", unit="img", enabled=progress)
    for cat in cats:
        manifest.category(cat)
        row = []
        for inst in _candidates(insts, family.instances_per_category, diverged == "skip"):
            out = renderer.render(cat, inst)
            if out.diverged and diverged == "skip":
                continue
            marked = out.diverged and diverged == "mark"
            row.append(Tile(rendered_picture(kind, out, fmt), cat, family.instance_label(inst), inst, marked))
            bar.update(1)
            if len(row) == len(insts):
                break
        rows.append(row)
    bar.close()
    if len(insts) == 1:  # one image per category (OFDB, 1p-frac): categories fill the grid, 8 to a row
        tiles = [Tile(t.image, t.category, f"cat {t.category}", t.instance) for row in rows for t in row]
        return grid_image([tiles[i : i + 8] for i in range(0, len(tiles), 8)], tile=tile, title=title, row_labels=False)
    return grid_image(rows, tile=tile, title=title)


def _candidates(chosen: list[int], available: int, more: bool) -> Iterable[int]:
    """The chosen instances, then (when skipping diverged ones) the others in order, at most 4x as many."""
    yield from chosen
    if more:
        taken = set(chosen)
        extra = (i for i in range(available) if i not in taken)
        for _, inst in zip(range(3 * len(chosen)), extra):
            yield inst


def preview_manifest(
    manifest: CategoryManifest,
    categories: int,
    instances: int | None = None,
    *,
    render: dict | None = None,
    available: int | None = None,
    tile: int = 128,
    progress: bool = False,
    diverged: str = "mark",
) -> Image.Image:
    """The first ``categories`` categories of ``manifest``, ``instances`` of each (None: up to 8) chosen to
    show the family's variety among the first ``available`` (a preset's instances; None: the family's
    space), rendered with the render options ``render`` (``None`` values: the defaults)."""
    family = manifest.family
    if not isinstance(categories, int) or not 1 <= categories <= len(manifest):
        raise ConfigError(
            f"categories: {categories} is more than the {len(manifest)} of {manifest.name!r}; use 1..{len(manifest)}"
        )
    settings = family.render_settings(manifest, dict(render or {}))
    available = family.instances_per_category if available is None else available
    count = instances or min(8, available)
    chosen = preview_instances(count, family, available)
    return preview_grid(manifest, range(categories), chosen, settings, tile=tile, progress=progress, diverged=diverged)


def preview_from_dataset(
    url: str,
    categories: int,
    instances: int,
    *,
    tile: int = 128,
    progress: bool = False,
    storage_options: dict | None = None,
    diverged: str = "mark",
) -> Image.Image:
    """A grid of the stored images of a built dataset: the first ``categories`` categories
    met in shard order, ``instances`` samples each (reading only as many shards as needed);
    diverged samples (their records say) are marked, skipped or shown (:data:`DIVERGED_MODES`)."""
    from .dataset import open_manifest

    manifest, store = open_manifest(url, storage_options)
    return grid_from_shards(manifest, store, categories, instances, tile=tile, progress=progress, diverged=diverged)


def grid_from_shards(
    manifest, store, categories: int, instances: int, *, tile: int = 128, progress: bool = False, diverged: str = "mark"
) -> Image.Image:
    """:func:`preview_from_dataset` for a loaded (validated) manifest and the store of its shards."""
    from .shardplan import ShardPlan, read_planned

    check_choice("diverged", diverged, DIVERGED_MODES)
    if categories < 1 or instances < 1:
        raise ConfigError("categories/instances: use positive integers")
    definition = manifest.definition()
    family = definition.family
    rows: dict[int, list[Tile]] = {}
    bar = progress_bar(total=categories * instances, desc="preview", unit="img", enabled=progress)
    plans = (ShardPlan.of(definition, index) for index in range(len(manifest.shards)))
    planned = (  # the manifest's shards are its plan's (checked when it was read)
        (plan, position, sample)
        for plan, s in zip(plans, manifest.shards)
        for position, sample in enumerate(
            read_planned(store.read_bytes(s.name, s.bytes, exact=True, why="the manifest states"), plan)
        )
    )
    kind, fmt = definition.kind, definition.sample_format
    one_group = definition.num_groups == 1 and definition.num_categories > 1
    seen = 0
    for plan, position, sample in planned:
        group, inst = plan.pairs[position]  # which sample it is: the plan says
        record = plan.record(position, sample)  # and its record must say the same
        blown = bool(record.get("diverged", False))
        if blown and diverged == "skip":
            continue
        cat = seen // instances if one_group else group  # one group: rows of its samples
        seen += 1
        if cat not in rows and len(rows) >= categories:
            continue
        row = rows.setdefault(cat, [])
        if len(row) < instances:
            picture = kind.picture(kind.arrays(sample, fmt, "numpy", f"{sample['__url__']}: sample {sample['__key__']!r}"))
            row.append(Tile(picture, cat, family.instance_label(inst), inst, blown and diverged == "mark"))
            bar.update(1)
        if len(rows) >= categories and all(len(r) >= instances for r in rows.values()):
            break
    bar.close()
    ordered = [sorted(rows[c], key=lambda t: t.instance) for c in sorted(rows)]
    t = manifest.totals
    title = f"{manifest.name} {manifest.version}  {t['samples']} samples, {t['shards']} shards  (from the shards)"
    if one_group:
        return grid_image(ordered, tile=tile, title=title, row_labels=False)
    if instances == 1:  # one image per category: categories fill the grid, 8 to a row
        tiles = [Tile(r[0].image, r[0].category, f"cat {r[0].category}", r[0].instance) for r in ordered]
        return grid_image([tiles[i : i + 8] for i in range(0, len(tiles), 8)], tile=tile, title=title, row_labels=False)
    return grid_image(ordered, tile=tile, title=title)
