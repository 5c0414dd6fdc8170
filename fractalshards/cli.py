"""The ``fractalshards`` command line: presets, search, render, preview, build, recipe, info, publish, ls, verify."""

from __future__ import annotations

import argparse
import dataclasses
import io
import json
import logging
import math
import os
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from . import __version__, png
from .categories import CategoryManifest
from .definition import DEFAULT_INSTANCES, DatasetDefinition
from .errors import DEFAULT_LICENSE, ConfigError, ShardIntegrityError
from .families import DEFAULT_FAMILY, family_names, flagged_fields, get_family
from .limits import Limits, raised
from .presets import all_presets, get_preset, load_source, preset_table
from .results import DIVERGED_MEANING
from .storage import atomic_write, redact

__all__ = ["main", "build_parser"]

log = logging.getLogger("fractalshards")


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (no usage dump): ``fractalshards build: error: ...``."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


class _CurrentStderr(logging.StreamHandler):
    """A handler that writes to whatever ``sys.stderr`` is when it emits (it may be replaced after
    the first ``main()``: by a caller redirecting output, or a test capturing it)."""

    @property
    def stream(self):  # type: ignore[override]
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:
        pass


def _non_negative(text: str) -> int:
    try:
        value = int(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from exc
    if value < 0:
        raise argparse.ArgumentTypeError(f"{value} is negative; use 0 or more")
    return value


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from exc
    if value < 1:  # one message for 0 and -5 alike: the advice names what is allowed
        raise argparse.ArgumentTypeError(f"{value} is not allowed; use 1 or more")
    return value


def _add_source(p: argparse.ArgumentParser, dataset: bool = False, like: bool = False, recipe: bool = False) -> None:
    # preview may take a positional URL instead, so its group is checked by hand.
    src = p.add_mutually_exclusive_group(required=not dataset)
    src.add_argument(
        "--preset",
        choices=None,
        metavar="NAME",
        help=f"a named category set ('fractalshards presets' lists them): {', '.join(all_presets())}",
    )
    src.add_argument(
        "--manifest",
        metavar="FILE",
        help="a category manifest JSON written by 'fractalshards search' (or a dataset's manifest.json: its embedded categories)",
    )
    if dataset:
        src.add_argument("--dataset", metavar="URL", help="a built dataset (folder or URL): the grid comes from its shards")
    if recipe:
        src.add_argument(
            "--recipe",
            metavar="URL",
            help="build a recipe written by 'fractalshards recipe' (a file or "
            "URL; a dataset's manifest.json serves too); no other definition flag may be given",
        )
    if like:
        src.add_argument(
            "--like",
            metavar="URL",
            help="rebuild exactly the definition of an existing dataset (a folder, "
            "URL or published PREFIX@tag) from its manifest; no other definition flag may be given",
        )
    if not dataset:  # preview's --categories is its number of rows, and slices the preset the same way
        p.add_argument(
            "--categories",
            type=_positive,
            default=None,
            metavar="N",
            help="only the first N categories of the preset (a generated preset searches only those)",
        )
    _add_setting_flags(p.add_argument_group("generated presets (their search settings)"), "search", preset_override=True)


#: The definition fields that build/recipe flags set, and their defaults (declared once, on DatasetDefinition);
#: the flags default to None so that --like can tell what was given.
_BUILD_DEFAULTS = {
    name: DatasetDefinition.__dataclass_fields__[name].default for name in ("shard_size", "png_compress_level", "png_encoder")
}


def _settings_flags(kind: str, preset_override: bool = False) -> dict[str, dict]:
    """Every registered family's flagged settings of ``kind`` ("search" or "render"), merged by name:
    ``{name: {"field": Field, "defaults": {family: default}}}`` in declaration order."""
    flags: dict[str, dict] = {}
    for name in family_names():
        family = get_family(name)
        cls = family.SearchSettings if kind == "search" else family.Settings
        defaults = family.search_defaults() if kind == "search" else family.render_defaults()
        for f in flagged_fields(cls):
            if preset_override and not f.metadata["preset_override"]:
                continue
            entry = flags.setdefault(f.name, {"field": f, "defaults": {}})
            entry["defaults"][name] = defaults.get(f.name, f.default)
    return flags


def _flag_type(f) -> object:
    default = f.default
    if isinstance(default, bool) or f.metadata["choices"]:
        return None
    if isinstance(default, int):
        return _non_negative if f.metadata["minimum"] == 0 else _positive
    if isinstance(default, float):
        return float
    return None


def _default_text(defaults: dict) -> str:
    values = set(map(repr, defaults.values()))
    if len(values) == 1:
        text = f"default {next(iter(defaults.values()))}"
        return text if len(defaults) == len(family_names()) else f"{', '.join(defaults)}; {text}"
    return "defaults: " + ", ".join(f"{family} {value}" for family, value in defaults.items())


def _add_setting_flags(group, kind: str, preset_override: bool = False) -> None:
    """One flag per flagged settings field of any family (help and defaults from the field itself)."""
    for name, entry in _settings_flags(kind, preset_override).items():
        f = entry["field"]
        group.add_argument(
            "--" + name.replace("_", "-"),
            dest=name,
            type=_flag_type(f),
            choices=f.metadata["choices"],
            default=None,
            metavar=None if f.metadata["choices"] else name.split("_")[-1][0].upper(),
            help=f"{f.metadata['help']} ({_default_text(entry['defaults'])})",
        )


def _export_formats() -> dict[str, list[str]]:
    formats: dict[str, list[str]] = {}
    for name in family_names():
        for fmt in get_family(name).export_formats:
            formats.setdefault(fmt, []).append(name)
    return formats


def _render_flags() -> tuple[str, ...]:
    return ("mode", *_settings_flags("render"))


def _definition_flags() -> tuple[str, ...]:
    return ("instances", "categories", *_BUILD_DEFAULTS, *_render_flags(), "name", *_settings_flags("search", True))


def _add_definition_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--instances",
        type=_positive,
        default=None,
        metavar="K",
        help=f"instances per category (default: the preset's, else {DEFAULT_INSTANCES} or the family's whole "
        "instance space if smaller)",
    )
    p.add_argument(
        "--shard-size",
        type=_positive,
        default=None,
        metavar="N",
        help=f"samples per shard (default {_BUILD_DEFAULTS['shard_size']}; a build that would get fewer shards than "
        "workers gets smaller ones, one or more a worker: part of the definition, so give it to pin it)",
    )
    p.add_argument("--name", default=None, help="dataset name (default: the category set's)")
    p.add_argument(
        "--png-compress-level",
        type=int,
        default=None,
        choices=range(10),
        metavar="L",
        help=f"PNG zlib level 0..9 (default {_BUILD_DEFAULTS['png_compress_level']})",
    )
    p.add_argument(
        "--png-encoder",
        choices=png.ENCODERS,
        default=None,
        help="direct: two-level grey images written from their 1-bit rows, unfiltered, zlib (fast); portable: the same "
        "rows deflated by fractalshards' own compiled encoder (the same bytes on every machine; faster on dense 8-bit "
        "images); pillow: everything through Pillow, as in datasets built before encoders were named (default: the "
        f"family's, else {_BUILD_DEFAULTS['png_encoder']})",
    )


def _add_render_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("render settings (a flag that the family has not is an error)")
    g.add_argument(
        "--mode",
        choices=("official", "native"),
        help="official: the released generator's random streams "
        "(pixel-identical renders); native: every stream from (seed, category, instance). Default: the preset's",
    )
    _add_setting_flags(g, "render")


_ALLOW_LARGE_HELP = (
    "lift the bounds on what definitions, recipes, manifests and states may ask for (image size, points, "
    "instances, shard size, categories...; see fractalshards.limits): for data you trust"
)


#: Each subcommand's ``--help`` ends with these real command lines (checked by the tests: each parses).
EXAMPLES: dict[str, list[str]] = {
    "presets": ["fractalshards presets", "fractalshards presets --json"],
    "search": [
        "fractalshards search --mode official --categories 1000 --out fractaldb-1k.json",
        "fractalshards search --family visualatom --mode native --categories 100 --out va-100.json",
        "fractalshards search --mode official --categories 1000 --format official-csv --out csv/",
    ],
    "render": [
        "fractalshards render --preset fractaldb-1k --category 7 --weight 13 --flip 2 --patch 0 --out a.png",
        "fractalshards render --preset visualatom-1k --category 3 --instance 5 --out atom.png",
    ],
    "preview": [
        "fractalshards preview --preset fractaldb-100 --categories 8 --instances 8 --out grid.png",
        "fractalshards preview ./data/fractaldb-100 --categories 4 --instances 6 --out shards.png",
    ],
    "build": [
        "fractalshards build --preset fractaldb-100 --instances 10 --out ./data/fdb-100x10",
        "fractalshards build --recipe fdb1k-recipe.json --out s3://bucket/datasets/fractaldb-1k",
        "fractalshards build --preset rcdb-1k --categories 100 --instances 100 --workers 0 --out ./data/rcdb",
    ],
    "recipe": [
        "fractalshards recipe --preset fractaldb-1k --out fdb1k-recipe.json",
        "fractalshards recipe --like ./data/fdb-100x10 --instances 100 --out bigger.json",
    ],
    "mix": [
        "fractalshards mix ./data/fdb-100x10 va-recipe.json --weights 3,1 --out mixture.json",
        "fractalshards mix s3://b/fdb@v1 rcdb.json --weights 1,1 --fresh-instances --batching per_source --out mixture.json",
        "fractalshards publish mixture.json s3://b/mixtures/fdb-rcdb --tag v1",
    ],
    "publish": [
        "fractalshards publish ./data/fdb-100x10 s3://bucket/datasets/fractaldb-100 --tag v1",
        "fractalshards publish fdb1k-recipe.json s3://bucket/recipes/fractaldb-1k --tag v1",
    ],
    "card": [
        "fractalshards card ./data/fdb-100x10",
        "fractalshards card s3://bucket/datasets/fractaldb-100@v1 --out card/ --license CC-BY-4.0",
    ],
    "ls": ["fractalshards ls s3://bucket/datasets/fractaldb-100", "fractalshards ls ./published --json"],
    "verify": [
        "fractalshards verify ./data/fdb-100x10",
        "fractalshards verify s3://bucket/datasets/fractaldb-100@v1 --render-sample 100",
        "fractalshards verify s3://bucket/datasets/fractaldb-1k@v1 --recipe fdb1k-recipe.json --render-sample 20",
    ],
    "inspect": [
        "fractalshards inspect ./data/fdb-100x10",
        "fractalshards inspect ./data/fdb-100x10 --shard 0",
        "fractalshards inspect s3://bucket/datasets/fractaldb-100@v1 --sample 000007-0003 --out sample.png",
    ],
    "info": ["fractalshards info ./data/fdb-100x10", "fractalshards info s3://bucket/datasets/fractaldb-100@v1 --json"],
}


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``fractalshards`` command."""
    parser = _Parser(
        prog="fractalshards",
        description="Formula-driven (FractalDB) datasets: search categories, render, preview, build shards, inspect.",
    )
    parser.add_argument("--version", action="version", version=f"fractalshards {__version__}")
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")
    parser.add_argument("--allow-large", action="store_true", help=_ALLOW_LARGE_HELP)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=_Parser)

    common = _Parser(add_help=False)
    # SUPPRESS: given after the command it counts, absent it leaves the top-level value.
    common.add_argument("--no-progress", action="store_true", default=argparse.SUPPRESS, help="hide progress bars")
    common.add_argument("--allow-large", action="store_true", default=argparse.SUPPRESS, help=_ALLOW_LARGE_HELP)

    s = sub.add_parser(
        "search",
        parents=[common],
        help="search the categories of a family into a manifest",
        description="Search categories of a family (--family). Official mode reproduces a released "
        "set's draws exactly (seed 1: FractalDB-1k, VisualAtom-1k, RCDB-1k); native mode "
        "gives each category its own (seed, index) stream. Family-specific flags given to "
        "another family are an error.",
    )
    s.add_argument(
        "--family",
        default=DEFAULT_FAMILY,
        metavar="NAME",
        help=f"the formula family: {', '.join(family_names())} (default {DEFAULT_FAMILY})",
    )
    s.add_argument("--mode", choices=("official", "native"), default="native", help="native (default) or official")
    s.add_argument("--categories", type=_positive, default=1000, metavar="N", help="number of categories (default 1000)")
    s.add_argument(
        "--seed",
        "--search-seed",
        dest="seed",
        type=_non_negative,
        default=None,
        help="search seed (default: 1 official, 0 native; --search-seed is the same flag)",
    )
    _add_setting_flags(s.add_argument_group("search settings (a flag that the family has not is an error)"), "search")
    s.add_argument(
        "--format",
        choices=("manifest", *_export_formats()),
        default="manifest",
        help="manifest: one JSON file (default); the others are families' own formats, written into the folder OUT: "
        + "; ".join(f"{fmt} ({', '.join(fams)})" for fmt, fams in _export_formats().items()),
    )
    s.add_argument("--name", default=None, help="dataset name stored in the manifest (default: derived)")
    s.add_argument(
        "--workers", type=_positive, default=None, metavar="N", help="threads for the fill checks (default: all cores)"
    )
    s.add_argument("--out", required=True, help="manifest file (manifest format) or folder (official-csv)")

    pr = sub.add_parser(
        "presets",
        parents=[common],
        help="list the named category sets of every family",
        description="List the presets: family, categories, instances per category, image size and paper.",
    )
    pr.add_argument("--json", action="store_true", help="print them as JSON")

    r = sub.add_parser(
        "render",
        parents=[common],
        help="render one instance of a category to a PNG",
        description="Render one image. Name the instance by index, or (FractalDB) by its weight row, "
        "flip and patch variant as in the official file names.",
    )
    _add_source(r)
    r.add_argument(
        "--category", type=_non_negative, metavar="C", help="category index (not needed where samples are one group: segrcdb)"
    )
    r.add_argument(
        "--instance", type=_non_negative, metavar="I", help="instance index (0 .. the family's instances per category - 1)"
    )
    for part, (text, fams) in _instance_parts().items():
        r.add_argument(f"--{part}", type=_non_negative, metavar=part[0].upper(), help=f"{', '.join(fams)}: {text}")
    _add_render_options(r)
    r.add_argument("--out", required=True, metavar="FILE.png", help="output PNG")
    r.add_argument(
        "--mask-out", metavar="FILE.png", help="segmentation families: also write the class mask (8-bit grey PNG of class ids)"
    )
    r.add_argument(
        "--cloud-out", metavar="FILE.npy", help="3-D families: also write the instance's point cloud (float64 (N, 3) .npy)"
    )

    p = sub.add_parser(
        "preview",
        parents=[common],
        help="a labelled grid of renders (categories x instances)",
        description="Render the first K categories, M instances each (spread over weight rows, "
        "flips and patches), into one labelled PNG; with --dataset URL (or a URL as the "
        "first argument) the pictures come from a built dataset's shards.",
    )
    p.add_argument("url", nargs="?", metavar="URL", help="a built dataset (same as --dataset URL)")
    _add_source(p, dataset=True)
    p.add_argument("--categories", type=_positive, default=8, metavar="K", help="number of categories, from 0 (default 8)")
    p.add_argument(
        "--instances",
        type=_positive,
        default=None,
        metavar="M",
        help="instances per category (default 8, or all of them when a category has fewer)",
    )
    p.add_argument("--tile", type=_positive, default=128, metavar="PX", help="tile size in pixels (default 128)")
    p.add_argument(
        "--diverged",
        choices=("mark", "skip", "show"),
        default="mark",
        help="samples whose chaos game blew up (near-blank, kept as released): frame them in red (mark, "
        "default), show the next sample instead (skip), or show them plainly (show)",
    )
    _add_render_options(p)
    p.add_argument("--out", required=True, metavar="grid.png", help="output PNG")

    b = sub.add_parser(
        "build",
        parents=[common],
        help="build WebDataset shards and a manifest (Ray or inline)",
        description="Render K instances of every category into deterministic WebDataset tar shards "
        "plus manifest.json, written to a folder or an fsspec URL (s3://bucket/prefix). "
        "Runs on an embedded local Ray by default, on a cluster with --address, or "
        "inline with --workers 0; re-running resumes.",
    )
    _add_source(b, like=True, recipe=True)
    _add_definition_options(b)
    b.add_argument("--out", required=True, metavar="URL", help="destination folder or URL, e.g. ./data or s3://bucket/prefix")
    where = b.add_mutually_exclusive_group()
    where.add_argument(
        "--workers",
        type=_non_negative,
        default=None,
        metavar="N",
        help="embedded local Ray with N CPUs (default: all cores); 0 builds inline without Ray",
    )
    where.add_argument("--address", metavar="ADDR", help="join a Ray cluster (auto, host:6379, ray://host:10001)")
    b.add_argument(
        "--device",
        default="cpu",
        metavar="DEV",
        help="cpu (default) renders in the Ray workers; cuda or cuda:N renders on this machine's GPU and "
        "encodes here, inline (the families with CUDA kernels: fractaldb, 1p-frac, visualatom, rcdb; the same shard bytes)",
    )
    b.add_argument("--max-retries", type=_non_negative, default=3, metavar="N", help="retries of a failed shard task (default 3)")
    b.add_argument(
        "--license",
        default=DEFAULT_LICENSE,
        metavar="SPDX",
        help=f"license recorded in the manifest and its cards (default {DEFAULT_LICENSE}, the FractalDB release's)",
    )
    b.add_argument(
        "--max-in-flight", type=_positive, default=None, metavar="N", help="most shard tasks pending (default: 2 x CPUs)"
    )
    b.add_argument(
        "--overwrite",
        action="store_true",
        help="replace a dataset (or unfinished build) of another definition that --out holds: its manifest "
        "is removed first, then its shards and card (a folder of other files is still refused)",
    )
    _add_render_options(b)

    r = sub.add_parser(
        "recipe",
        parents=[common],
        help="write a dataset definition (a recipe): nothing rendered",
        description="Write recipe.json: the categories, K instances, render settings, seed and shard "
        "plan of a dataset, with its version id (hash of the definition). 'build --recipe' "
        "builds it byte for byte; FractalStream renders it on the fly; 'publish' publishes it.",
    )
    _add_source(r, like=True)
    _add_definition_options(r)
    _add_render_options(r)
    r.add_argument("--out", required=True, metavar="recipe.json", help="output file")

    mx = sub.add_parser(
        "mix",
        parents=[common],
        help="write a mixture spec: several datasets or recipes streamed by weight",
        description="Write a mixture spec (mixture.json): every source opened, checked and pinned to the "
        "version it holds now (PREFIX@tag becomes PREFIX@<version>), with the weights, seed, epoch size, "
        "label and batching modes. MixedStream.from_spec(URL) and 'jobs/pretrain.py --data' stream it; "
        "publish, ls, verify and info take it.",
    )
    mx.add_argument("urls", nargs="+", metavar="URL", help="datasets or recipes (folders, URLs, PREFIX@tag, recipe.json)")
    mx.add_argument("--weights", required=True, metavar="W,W,...", help="one weight per source, e.g. 3,1")
    mx.add_argument(
        "--epoch-size", type=_positive, default=None, metavar="N", help="samples per epoch (default: the sum of the sources')"
    )
    mx.add_argument(
        "--labels",
        choices=("disjoint", "shared"),
        default="disjoint",
        help="offset each source's labels past the ones before it (disjoint, default) or keep them (shared)",
    )
    mx.add_argument(
        "--batching",
        choices=("mixed", "per_source"),
        default="mixed",
        help="sources mixed within a batch (mixed, default) or one source per batch "
        "(per_source: sources of different sizes or kinds)",
    )
    mx.add_argument(
        "--fresh-instances", action="store_true", help="render new instances every pass (native recipes and datasets)"
    )
    mx.add_argument("--seed", type=_non_negative, default=0, help="seed of the draws (default 0)")
    mx.add_argument("--name", default="mixture", help="the mixture's name (default mixture)")
    mx.add_argument("--out", required=True, metavar="mixture.json", help="output file")

    pub = sub.add_parser(
        "publish",
        parents=[common],
        help="publish a dataset as an immutable version under a prefix",
        description="Copy a built dataset to DEST/<version>/ (server-side within one store), check "
        "every shard's sha256, write the manifest, then record the version (and tags) in "
        "DEST/index.json. Existing versions and tags are refused unless --force.",
    )
    pub.add_argument("src", metavar="SRC", help="a built dataset (folder or URL), a recipe or a mixture spec")
    pub.add_argument("dest", metavar="DEST", help="publication prefix, e.g. s3://bucket/datasets/fractaldb-1k")
    pub.add_argument("--tag", action="append", default=[], metavar="TAG", help="a human tag such as v1 (repeatable)")
    pub.add_argument("--force", action="store_true", help="publish again / move tags that name another version")
    pub.add_argument(
        "--license", default=None, metavar="SPDX", help="license of the published copy (default: the dataset manifest's)"
    )
    pub.add_argument("--no-card", action="store_true", help="do not write README.md, preview.png and croissant.json")

    cd = sub.add_parser(
        "card",
        parents=[common],
        help="write a dataset card (README.md, preview.png, croissant.json)",
        description="Write the Hugging Face dataset card (README.md with YAML metadata), a preview grid "
        "read from the shards and Croissant 1.1 metadata (croissant.json) of a built or "
        "published dataset; 'publish' writes them into every version.",
    )
    cd.add_argument("url", metavar="URL", help="dataset folder or URL (PREFIX@tag resolves)")
    cd.add_argument("--out", default=None, metavar="DIR", help="where to write them (default: beside the shards)")
    cd.add_argument("--license", default=None, metavar="SPDX", help="license for the card (default: the manifest's)")
    cd.add_argument("--no-preview", action="store_true", help="skip preview.png (reads a few shards)")

    ls = sub.add_parser(
        "ls",
        parents=[common],
        help="list the versions and tags published under a prefix",
        description="List the versions and tags in DEST/index.json.",
    )
    ls.add_argument("dest", metavar="DEST", help="publication prefix")
    ls.add_argument("--json", action="store_true", help="print the index as JSON")

    v = sub.add_parser(
        "verify",
        parents=[common],
        help="check a dataset's shards and re-render samples",
        description="Check every shard's size, sha256 and sample count against the manifest, and "
        "re-render N random samples and compare their pixels. Exit 0 only when all match.",
    )
    v.add_argument(
        "url", metavar="URL", help="dataset folder or URL (PREFIX@tag, @latest and @<version> resolve), or a mixture spec"
    )
    v.add_argument("--render-sample", type=_non_negative, default=0, metavar="N", help="samples to re-render (default 0)")
    v.add_argument("--seed", type=_non_negative, default=0, help="which samples are picked (default 0)")
    v.add_argument(
        "--recipe",
        metavar="URL",
        default=None,
        help="check the dataset against this recipe (file, URL or "
        "PREFIX@tag): same definition, samples re-rendered from the recipe",
    )

    ins = sub.add_parser(
        "inspect",
        parents=[common],
        help="look inside a dataset: its shards, a shard's samples and members, a sample's record and image",
        description="Without --shard: every shard's name, samples, size and sha256. With --shard: that shard's "
        "samples, their labels (from the definition's plan) and their members' sizes. With --sample KEY "
        "(its shard found from the plan when --shard is left out): the sample's record and label, and with "
        "--out its picture as a PNG. Every shard read is checked as the readers check it (size, sha256, plan).",
    )
    ins.add_argument("url", metavar="URL", help="dataset folder or URL (PREFIX@tag resolves)")
    ins.add_argument("--shard", default=None, metavar="N", help="a shard's index or name")
    ins.add_argument("--sample", default=None, metavar="KEY", help="a sample's key, e.g. 000007-0063")
    ins.add_argument("--out", default=None, metavar="FILE.png", help="write the sample's picture here (with --sample)")
    ins.add_argument("--json", action="store_true", help="print what is shown as JSON")

    i = sub.add_parser(
        "info",
        parents=[common],
        help="describe a built dataset",
        description="Print a dataset's name, version, counts, sizes and settings.",
    )
    i.add_argument("url", metavar="URL", help="dataset folder or URL, or a mixture spec")
    i.add_argument("--json", action="store_true", help="print the whole manifest as JSON")
    for name, command in sub.choices.items():
        examples = EXAMPLES.get(name)
        if examples:
            command.epilog = "examples:\n" + "\n".join(f"  {line}" for line in examples)
            command.formatter_class = argparse.RawDescriptionHelpFormatter
    return parser


def _probe_writable(folder: Path) -> None:
    # Really create a file: permission bits say nothing for root or read-only mounts.
    try:
        fd, tmp = tempfile.mkstemp(prefix=".fractalshards-probe-", dir=folder)
    except OSError as exc:
        raise ConfigError(f"out: folder {str(folder)!r} is not writable ({exc.strerror}); choose another path") from exc
    os.close(fd)
    os.unlink(tmp)


def _check_output_file(path: str) -> Path:
    out = Path(path)
    parent = out.parent
    if out.is_dir():
        raise ConfigError(f"out: {path!r} is a folder; give a file name")
    if not parent.is_dir():
        raise ConfigError(f"out: folder {str(parent)!r} does not exist; create it or choose another path")
    _probe_writable(parent)
    return out


def _check_output_dir(path: str) -> Path:
    out = Path(path)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"out: {path!r} is a file; give a folder")
    probe = out
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir():
        raise ConfigError(f"out: {str(probe)!r} is a file; give a folder path")
    _probe_writable(probe)
    return out


def _load_source(args: argparse.Namespace, progress: bool) -> CategoryManifest:
    return load_source(
        preset=args.preset,
        manifest=args.manifest,
        categories=getattr(args, "categories", None),
        search={k: getattr(args, k, None) for k in _settings_flags("search", preset_override=True)},
        progress=progress,
    )


def _render_options(args: argparse.Namespace) -> dict:
    """The render flags given (a flag the family has not is an error where the settings are made)."""
    return {k: getattr(args, k) for k in _render_flags()}


def _instance_parts() -> dict[str, tuple[str, list[str]]]:
    parts: dict[str, tuple[str, list[str]]] = {}
    for name in family_names():
        for part, text in get_family(name).instance_parts:
            parts.setdefault(part, (text, []))[1].append(name)
    return parts


def _cmd_presets(args: argparse.Namespace, progress: bool) -> int:
    rows = preset_table()
    if args.json:
        print(json.dumps(rows, indent=1))
        return 0
    print(f"{'preset':15s} {'family':12s} {'categories':>10s} {'instances':>9s} {'samples':>10s} {'size':>5s}  paper")
    for r in rows:
        size = f"{r['size']:5d}" if r["size"] else "    -"  # point clouds have no image size
        print(
            f"{r['name']:15s} {r['family']:12s} {r['categories']:10,d} {r['instances']:9,d} {r['samples']:10,d} "
            f"{size}  {r['paper']}"
        )
    return 0


def _cmd_search(args: argparse.Namespace, progress: bool) -> int:
    family = get_family(args.family)
    family.check_search_mode(args.mode)
    settings = family.search_settings({k: getattr(args, k) for k in _settings_flags("search")})
    if args.format != "manifest":
        family.check_export_format(args.format)
    out = _check_output_dir(args.out) if args.format != "manifest" else _check_output_file(args.out)
    seed = args.seed if args.seed is not None else family.default_seed(args.mode)
    result = family.search(args.categories, mode=args.mode, seed=seed, settings=settings, workers=args.workers, progress=progress)
    name = args.name or family.default_name(args.mode, seed, settings, args.categories)
    manifest = CategoryManifest.from_search(name, args.mode, seed, settings, result, family=family.name)
    if args.format != "manifest":
        files = family.export(manifest, args.format, out)
        log.info("wrote %d %s files to %s (%d trials)", len(files), args.format, out, result.trials)
    else:
        manifest.save(out)
        log.info("wrote %s: %d categories, %d trials, %s", out, len(manifest), result.trials, manifest.content_hash)
    return 0


def _cmd_render(args: argparse.Namespace, progress: bool) -> int:
    from .instance import render_instance

    out = _check_output_file(args.out)
    parts = {k: getattr(args, k) for k in _instance_parts()}
    if args.instance is not None and any(v is not None for v in parts.values()):
        raise ConfigError(f"instance: give either --instance or --{'/--'.join(_instance_parts())}, not both")
    manifest = _load_source(args, progress)
    mask_out = _check_output_file(args.mask_out) if args.mask_out else None
    cloud_out = _check_output_file(args.cloud_out) if args.cloud_out else None
    one = render_instance(
        manifest,
        category=args.category,
        instance=args.instance,
        parts=parts,
        render=_render_options(args),
        cloud=cloud_out is not None,
    )
    one.write(out, mask_out=mask_out, cloud_out=cloud_out)
    written = "".join(f" and {p}" for p in (mask_out, cloud_out) if p is not None)
    log.info("wrote %s%s: %s", out, written, one.describe())
    return 0


def _cmd_preview(args: argparse.Namespace, progress: bool) -> int:
    from .preview import preview_from_dataset, preview_manifest

    out = _check_output_file(args.out)
    dataset_url = args.dataset or args.url
    if args.url and (args.preset or args.manifest or args.dataset):
        raise ConfigError("url: give a dataset URL or one of --preset/--manifest/--dataset, not both")
    if dataset_url:
        grid = preview_from_dataset(
            dataset_url, args.categories, args.instances or 8, tile=args.tile, progress=progress, diverged=args.diverged
        )
        buf = io.BytesIO()
        grid.save(buf, format="PNG")
        atomic_write(out, buf.getvalue())
        log.info("wrote %s (%dx%d) from %s", out, grid.width, grid.height, dataset_url)
        return 0
    if not (args.preset or args.manifest):
        raise ConfigError("source: give a dataset URL, --dataset URL, --preset NAME or --manifest FILE")
    manifest = _load_source(args, progress)
    grid = preview_manifest(
        manifest,
        args.categories,
        args.instances,
        render=_render_options(args),
        available=get_preset(args.preset).instances if args.preset else None,
        tile=args.tile,
        progress=progress,
        diverged=args.diverged,
    )
    buf = io.BytesIO()
    grid.save(buf, format="PNG")
    atomic_write(out, buf.getvalue())
    log.info("wrote %s (%dx%d)", out, grid.width, grid.height)
    return 0


def _definition_from_args(args: argparse.Namespace, progress: bool) -> DatasetDefinition:
    """The dataset definition that `build` / `recipe` flags describe (or --like / --recipe copy exactly)."""
    from .dataset import open_definition

    like = args.like or getattr(args, "recipe", None)
    if like:
        flag = "--like" if args.like else "--recipe"
        given = [f for f in _definition_flags() if getattr(args, f, None) is not None]
        if given:
            raise ConfigError(f"{flag}: takes the definition exactly as it is; drop --{given[0].replace('_', '-')}")
        kind, document, _ = open_definition(like)
        return document.definition() if kind == "dataset" else document.definition
    options = {key: getattr(args, key) for key in (*_BUILD_DEFAULTS, "name")}
    if args.preset is not None:
        search = {k: getattr(args, k, None) for k in _settings_flags("search", preset_override=True)}
        return DatasetDefinition.from_preset(
            args.preset,
            categories=args.categories,
            search=search,
            progress=progress,
            instances=args.instances,
            render=_render_options(args),
            **options,
        )
    manifest = _load_source(args, progress)
    return DatasetDefinition.from_manifest(manifest, instances=args.instances, render=_render_options(args), **options)


def _small_build_shard_size(definition: DatasetDefinition, args: argparse.Namespace) -> DatasetDefinition:
    """A build whose default shard size gives fewer shards than workers: the default shrinks so that every
    worker gets a shard (an explicit --shard-size, --like and --recipe always win; inline builds keep it).
    The shard size is part of the definition, so the log says so, and how to pin it."""
    from .parallel import available_cpus

    if args.shard_size is not None or args.like or getattr(args, "recipe", None) or args.workers == 0 or args.device != "cpu":
        return definition
    workers = args.workers or available_cpus()
    if definition.num_shards >= workers or definition.num_samples < workers:
        return definition
    size = math.ceil(definition.num_samples / workers)
    log.info(
        "shard size: %d (the default %d would give %d shard(s) for %d workers; --shard-size N fixes it, and the "
        "dataset's version with it)",
        size,
        definition.shard_size,
        definition.num_shards,
        workers,
    )
    return dataclasses.replace(definition, shard_size=size)


def _cmd_build(args: argparse.Namespace, progress: bool) -> int:
    from .builder import build

    definition = _small_build_shard_size(_definition_from_args(args, progress), args)
    build(
        definition,
        args.out,
        workers=args.workers,
        address=args.address,
        max_in_flight=args.max_in_flight,
        max_retries=args.max_retries,
        progress=progress,
        license=args.license,
        device=args.device,
        overwrite=args.overwrite,
    )
    return 0


def _cmd_recipe(args: argparse.Namespace, progress: bool) -> int:
    from .recipe import Recipe

    out = _check_output_file(args.out)
    recipe = Recipe(_definition_from_args(args, progress))
    atomic_write(out, recipe.to_json().encode())
    d = recipe.definition
    log.info(
        "wrote recipe %s version %s: %d categories x %d instances = %d samples in %d shards (%s)",
        recipe.name,
        recipe.version,
        d.num_categories,
        d.instances,
        d.num_samples,
        d.num_shards,
        out,
    )
    return 0


def _cmd_mix(args: argparse.Namespace, progress: bool) -> int:
    from .mixspec import parse_weights
    from .mixture import make_spec

    out = _check_output_file(args.out)
    spec = make_spec(
        args.urls,
        parse_weights(args.weights, len(args.urls)),
        name=args.name,
        seed=args.seed,
        epoch_size=args.epoch_size,
        labels=args.labels,
        batching=args.batching,
        fresh_instances=args.fresh_instances,
    )
    atomic_write(out, spec.to_json().encode())
    log.info("wrote %s: mixture %s version %s of %d sources", out, spec.name, spec.version, len(spec.sources))
    return 0


def describe_mixture(spec, url: str) -> str:
    """Human-readable summary of a mixture spec (``fractalshards info``)."""
    total = sum(s.weight for s in spec.sources)
    lines = [
        f"mixture   {spec.name}",
        f"version   {spec.version}  ({spec.fingerprint})",
        f"url       {url}",
        f"epoch     {spec.epoch_size if spec.epoch_size is not None else 'the sum of the sources'} samples; "
        f"labels {spec.labels}, batching {spec.batching}, seed {spec.seed}",
    ]
    for k, s in enumerate(spec.sources):
        fresh = ", fresh instances" if s.fresh_instances else ""
        lines.append(f"source {k}  {s.weight / total:6.1%}  {s.kind} {s.name} {s.version}{fresh}  {s.url}")
    return "\n".join(lines)


def _cmd_inspect(args: argparse.Namespace, progress: bool) -> int:
    from PIL import Image

    from .inspection import inspect_dataset

    if args.out is not None and args.sample is None:
        raise ConfigError("out: --out writes a sample's picture; give --sample KEY too")
    out = _check_output_file(args.out) if args.out is not None else None
    manifest, shard, sample = inspect_dataset(args.url, shard=args.shard, sample=args.sample)
    if args.json:
        if sample is not None:
            print(json.dumps(sample.to_dict(), indent=1, sort_keys=True))
        elif shard is not None:
            print(json.dumps(shard.to_dict(), indent=1, sort_keys=True))
        else:
            print(json.dumps([s.to_dict() for s in manifest.shards], indent=1, sort_keys=True))
    elif sample is not None:
        print(f"sample  {sample.key} (position {sample.position} of {sample.shard})")
        print(f"label   {sample.label if sample.label is not None else '- (no class label: ' + manifest.name + ')'}")
        print("members " + ", ".join(f"{ext} {size:,} B" for ext, size in sample.members.items()))
        if sample.record is not None:
            print("record  " + json.dumps(sample.record, sort_keys=True))
    elif shard is not None:
        print(f"{shard.name}: {len(shard.samples)} samples, {shard.bytes:,} bytes, sha256 {shard.sha256[:16]}...")
        print(f"{'#':>5}  {'key':12s}  {'label':>5}  members")
        for s in shard.samples:
            label = "-" if s.label is None else str(s.label)
            print(f"{s.position:5d}  {s.key:12s}  {label:>5}  " + ", ".join(f"{e} {n:,}" for e, n in s.members.items()))
    else:
        print(f"{manifest.name} version {manifest.version}: {len(manifest.shards)} shards")
        print(f"{'#':>5}  {'shard':18s}  {'samples':>7}  {'bytes':>12}  sha256")
        for k, s in enumerate(manifest.shards):
            print(f"{k:5d}  {s.name:18s}  {s.samples:7d}  {s.bytes:12,}  {s.sha256[:16]}...")
    if out is not None and sample is not None:
        atomic_write(out, lambda fh: Image.fromarray(sample.picture).save(fh, format="PNG"))
        log.info("wrote %s: the picture of %s", out, sample.key)
    return 0


def _cmd_info(args: argparse.Namespace, progress: bool) -> int:
    from .dataset import open_document, open_manifest

    kind, document, _ = open_document(args.url)
    if kind == "mixture":
        print(document.to_json() if args.json else describe_mixture(document, args.url), end="\n" if not args.json else "")
        return 0
    manifest, _ = open_manifest(args.url)
    if args.json:
        print(manifest.to_json(), end="")
        return 0
    print(describe_dataset(manifest, args.url))
    return 0


def describe_dataset(manifest, url: str) -> str:
    """Human-readable summary of a dataset manifest (``fractalshards info``)."""
    t = manifest.totals
    d = manifest.definition_data
    definition = manifest.definition()
    sizes = [s.bytes for s in manifest.shards]
    lines = [
        f"dataset   {manifest.name}",
        f"version   {manifest.version}  ({manifest.fingerprint})",
        f"url       {url}",
        f"generator {manifest.generator.get('name')} {manifest.generator.get('version')}",
        f"samples   {t['samples']} = {t['categories']} categories x {t['instances_per_category']} instances "
        f"({t['diverged']} diverged{': see below' if t['diverged'] else ''})",
        f"shards    {t['shards']} of {definition.shard_size} samples, {min(sizes) / 1e6:.2f}-{max(sizes) / 1e6:.2f} MB each",
        f"size      {t['bytes'] / 1e6:.1f} MB ({t['bytes'] / max(1, t['samples']) / 1024:.2f} KiB per sample)",
        f"family    {definition.family.name}",
        f"render    {definition.family.describe_settings(definition.render)}",
        f"categories {definition.categories.name} ({definition.categories.content_hash})",
        f"order     {d['order']}, keys {d['key_format']}, definition format {definition.definition_format}",
    ]
    if t["diverged"]:
        lines.append(DIVERGED_MEANING)
    return "\n".join(lines)


def _cmd_publish(args: argparse.Namespace, progress: bool) -> int:
    from .publisher import publish

    publish(
        args.src,
        args.dest,
        tags=args.tag,
        force=args.force,
        progress=progress,
        say=log.info,
        license=args.license,
        card=not args.no_card,
    )
    return 0


def _cmd_card(args: argparse.Namespace, progress: bool) -> int:
    import dataclasses

    from .card import write_card
    from .dataset import open_manifest
    from .errors import check_license
    from .storage import open_store

    manifest, store = open_manifest(args.url)
    if args.license is not None:
        manifest = dataclasses.replace(manifest, license=check_license(args.license))
    out = store
    if args.out is not None:
        out = open_store(args.out)
        out.check_reachable(create=True)
    names = write_card(manifest, store, out, url=args.url if "://" in args.url else "", preview=not args.no_preview)
    log.info("wrote %s to %s", ", ".join(names), out.url)
    return 0


def _cmd_ls(args: argparse.Namespace, progress: bool) -> int:
    from .catalog import read_index
    from .storage import open_store

    store = open_store(args.dest)
    store.check_reachable()
    index = read_index(store)
    if args.json:
        print(json.dumps(index, indent=1, sort_keys=True))
        return 0
    versions = sorted(index["versions"].values(), key=lambda e: e["created"])
    if not versions:
        print(f"nothing published at {args.dest}")
        return 0
    print(f"{'version':16s}  {'kind':7s}  {'created':27s}  {'samples':>9s}  {'shards':>6s}  {'size':>10s}  tags")
    for e in versions:
        tags = list(e.get("tags", [])) + (["latest"] if e["version"] == index.get("latest") else [])
        kind = e.get("kind", "dataset")
        print(
            f"{e['version']:16s}  {kind:7s}  {e['created']:27s}  {e['samples']:9d}  "
            f"{e.get('shards', 0) if kind == 'dataset' else '-':>6}  "
            f"{e['bytes'] / 1e6:8.3f}MB  {', '.join(tags)}"
        )
    return 0


def _cmd_verify(args: argparse.Namespace, progress: bool) -> int:
    from .dataset import open_document
    from .verifier import verify

    kind, document, _ = open_document(args.url)
    if kind == "mixture":
        return _verify_mixture(args, document, progress)
    report = verify(args.url, render_sample=args.render_sample, seed=args.seed, progress=progress, recipe=args.recipe)
    head = (
        f"{args.url}: version {report.version}, {report.shards} shards, {report.samples} samples checked, "
        f"{report.rendered} re-rendered"
    )
    if report.ok:
        print(f"ok: {head}")
        return 0
    print(f"FAILED: {head}; {len(report.problems)} problem(s):")
    for problem in report.problems:
        print(f"  {problem}")
    return 1


def _verify_mixture(args: argparse.Namespace, spec, progress: bool) -> int:
    """Each source of a mixture: at its pinned version, datasets verified shard by shard."""
    from .dataset import open_definition
    from .verifier import verify

    failed = 0
    for k, src in enumerate(spec.sources):
        kind, document, _ = open_definition(src.url)
        if document.version != src.version:
            print(f"FAILED: source {k} {src.url}: version {document.version}, but the spec pins {src.version}")
            failed += 1
            continue
        if kind == "recipe":
            print(f"ok: source {k} {src.url}: recipe version {document.version} (rendered on demand; nothing stored)")
            continue
        report = verify(src.url, render_sample=args.render_sample, seed=args.seed, progress=progress)
        head = f"source {k} {src.url}: version {report.version}, {report.shards} shards, {report.samples} samples checked"
        if report.ok:
            print(f"ok: {head}")
        else:
            failed += 1
            print(f"FAILED: {head}; {len(report.problems)} problem(s):")
            for problem in report.problems:
                print(f"  {problem}")
    print(f"{'ok' if not failed else 'FAILED'}: mixture {spec.name} version {spec.version}, {len(spec.sources)} sources")
    return 1 if failed else 0


_COMMANDS = {
    "inspect": _cmd_inspect,
    "mix": _cmd_mix,
    "presets": _cmd_presets,
    "card": _cmd_card,
    "publish": _cmd_publish,
    "ls": _cmd_ls,
    "verify": _cmd_verify,
    "search": _cmd_search,
    "render": _cmd_render,
    "preview": _cmd_preview,
    "build": _cmd_build,
    "recipe": _cmd_recipe,
    "info": _cmd_info,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status (0 ok, 2 bad input)."""
    # Our own messages at INFO; libraries (botocore, s3fs, ray) stay at WARNING.
    if not log.handlers:
        handler = _CurrentStderr()
        handler.setFormatter(logging.Formatter("%(message)s"))
        log.addHandler(handler)
        log.setLevel(logging.INFO)
        log.propagate = False
    parser = build_parser()
    args = parser.parse_args(argv)
    progress = not args.no_progress
    debug = bool(os.environ.get("FRACTALSHARDS_DEBUG"))
    try:
        with raised(Limits.large() if args.allow_large else None):
            return _COMMANDS[args.command](args, progress)
    except ConfigError as exc:  # bad input: the fix is the user's
        if debug:
            raise
        print(f"fractalshards {args.command}: error: {redact(str(exc))}", file=sys.stderr)
        return 2
    except ShardIntegrityError as exc:  # bad stored data: the message names the file and what is wrong
        if debug:
            raise
        print(f"fractalshards {args.command}: error: {redact(' '.join(str(exc).split()))}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("fractalshards: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader of our output went away (`| head`): not an error of ours
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit's flush
        return 141
    except Exception as exc:  # a store's or library's error: one redacted line, no traceback
        if debug:
            raise
        if isinstance(exc, OSError) and exc.strerror:
            text = f"{exc.strerror}" + (f" ({exc.filename})" if exc.filename else "")
        else:
            text = f"{type(exc).__name__}: {exc}"
        text = redact(" ".join(text.split()))
        print(f"fractalshards {args.command}: error: {text[:400]}; set FRACTALSHARDS_DEBUG=1 for the traceback", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
