"""Dataset cards: ``README.md`` with Hugging Face card metadata, a preview grid, and Croissant JSON-LD.

For a built dataset, :func:`write_card` writes three files beside its shards (``publish``
writes them into every published version, before the manifest):

- ``README.md``: a Hugging Face dataset card. Its YAML header carries ``pretty_name``,
  ``license`` (the manifest's SPDX id, lower-cased as the Hub lists them),
  ``task_categories: [image-classification]``, ``size_categories``, ``tags``,
  ``configs`` (``data_files`` pointing at the shards, which the Hub and
  ``datasets.load_dataset("webdataset", ...)`` read) and ``dataset_info`` (features,
  the one ``train`` split, sizes). The body shows the preview, the counts and sizes,
  the family and its paper, how to stream it and how to rebuild it byte for byte.
- ``preview.png``: a grid of stored images, read back from the shards.
- ``croissant.json``: Croissant 1.1 (MLCommons) metadata: every shard a
  ``cr:FileObject`` with its ``sha256``, the ``.png`` and ``.cls`` members as
  ``cr:FileSet``\\ s contained in them, and a ``samples`` record set with ``image``,
  ``label`` and ``key`` fields.

Every value comes from the validated dataset manifest; nothing is read from a shard
except the preview's images.
"""

from __future__ import annotations

import io
import json

from .dataset import MANIFEST_NAME, DatasetManifest
from .storage import Store

__all__ = ["CARD_NAME", "CROISSANT_NAME", "PREVIEW_NAME", "croissant", "card_markdown", "write_card", "size_category"]

CARD_NAME = "README.md"
CROISSANT_NAME = "croissant.json"
PREVIEW_NAME = "preview.png"

#: The JSON-LD context of Croissant 1.1 documents (the terms this file uses and the standard prefixes).
_CONTEXT = {
    "@language": "en",
    "@vocab": "https://schema.org/",
    "sc": "https://schema.org/",
    "cr": "http://mlcommons.org/croissant/",
    "rai": "http://mlcommons.org/croissant/RAI/",
    "dct": "http://purl.org/dc/terms/",
    "citeAs": "cr:citeAs",
    "column": "cr:column",
    "conformsTo": "dct:conformsTo",
    "containedIn": "cr:containedIn",
    "data": {"@id": "cr:data", "@type": "@json"},
    "dataType": {"@id": "cr:dataType", "@type": "@vocab"},
    "examples": {"@id": "cr:examples", "@type": "@json"},
    "extract": "cr:extract",
    "field": "cr:field",
    "fileProperty": "cr:fileProperty",
    "fileObject": "cr:fileObject",
    "fileSet": "cr:fileSet",
    "format": "cr:format",
    "includes": "cr:includes",
    "isLiveDataset": "cr:isLiveDataset",
    "jsonPath": "cr:jsonPath",
    "key": "cr:key",
    "md5": "cr:md5",
    "parentField": "cr:parentField",
    "path": "cr:path",
    "recordSet": "cr:recordSet",
    "references": "cr:references",
    "regex": "cr:regex",
    "repeated": "cr:repeated",
    "replace": "cr:replace",
    "separator": "cr:separator",
    "source": "cr:source",
    "subField": "cr:subField",
    "transform": "cr:transform",
    "equivalentProperty": "cr:equivalentProperty",
    "samplingRate": "cr:samplingRate",
}

_TAGS = ["formula-driven", "synthetic", "fdsl", "webdataset", "pre-training"]


def _tags(manifest: DatasetManifest) -> list[str]:
    # The shared tags, the task of the samples' kind and the family.
    d = manifest.definition()
    return [*_TAGS[:4], d.kind.tag, *_TAGS[4:], d.family.name]


def size_category(samples: int) -> str:
    """The Hugging Face ``size_categories`` bucket of ``samples``."""
    bounds = [
        (1_000, "n<1K"),
        (10_000, "1K<n<10K"),
        (100_000, "10K<n<100K"),
        (1_000_000, "100K<n<1M"),
        (10_000_000, "1M<n<10M"),
        (100_000_000, "10M<n<100M"),
        (1_000_000_000, "100M<n<1B"),
    ]
    for bound, name in bounds:
        if samples < bound:
            return name
    return "n>1T" if samples >= 10**12 else "1B<n<10B"


def _family(manifest: DatasetManifest):
    return manifest.definition().family


def _description(manifest: DatasetManifest) -> str:
    d = manifest.definition()
    t = manifest.totals
    kind = d.kind
    what = kind.describe(t, d.family.num_classes(d.categories))
    return (
        f"{manifest.name}: a formula-driven {kind.task_words} dataset of the "
        f"{d.family.name} family ({d.family.paper}), {what} rendered from formulas by fractalshards. No real image "
        f"and no personal data is involved. WebDataset tar shards; version {manifest.version} ({manifest.fingerprint})."
    )


def croissant(manifest: DatasetManifest, url: str = "") -> dict:
    """The Croissant 1.1 JSON-LD of ``manifest``; file URLs are relative to the folder of the JSON.

    ``url`` (the dataset's public location, if any) goes into the ``url`` property.
    """
    shards = [
        {
            "@type": "cr:FileObject",
            "@id": s.name,
            "name": s.name,
            "contentUrl": s.name,
            "contentSize": f"{s.bytes} B",
            "encodingFormat": "application/x-tar",
            "sha256": s.sha256,
        }
        for s in manifest.shards
    ]
    contained = [{"@id": s.name} for s in manifest.shards]

    def file_set(name: str, description: str, encoding: str, includes: str) -> dict:
        return {
            "@type": "cr:FileSet",
            "@id": name,
            "name": name,
            "description": description,
            "containedIn": contained,
            "encodingFormat": encoding,
            "includes": includes,
        }

    def field(
        name: str, data_type: str, description: str, prop: str, regex: str | None = None, files_id: str = "png-files"
    ) -> dict:
        source: dict = {"fileSet": {"@id": files_id}, "extract": {"fileProperty": prop}}
        if regex:
            source["transform"] = {"regex": regex}
        return {
            "@type": "cr:Field",
            "@id": f"samples/{name}",
            "name": name,
            "description": description,
            "dataType": data_type,
            "source": source,
        }

    # The sample kind's files and fields (images and labels, masks, point clouds...).
    files, fields, what = manifest.definition().kind.croissant(file_set, field)
    record = {
        "@type": "cr:RecordSet",
        "@id": "samples",
        "name": "samples",
        "description": what,
        "key": {"@id": "samples/key"},
        "field": fields,
    }
    family = _family(manifest)
    doc = {
        "@context": _CONTEXT,
        "@type": "sc:Dataset",
        "conformsTo": "http://mlcommons.org/croissant/1.1",
        "name": manifest.name,
        "description": _description(manifest),
        "license": f"https://spdx.org/licenses/{manifest.license}.html",
        "url": url or f"https://example.invalid/{manifest.name}",
        "version": "1.0.0",
        "identifier": manifest.fingerprint,
        "keywords": _tags(manifest),
        "citeAs": family.paper,
        "creator": {"@type": "sc:Organization", "name": f"fractalshards {manifest.generator.get('version', '')}".strip()},
        "isAccessibleForFree": True,
        "distribution": shards + files,
        "recordSet": [record],
    }
    return doc


def card_markdown(manifest: DatasetManifest, url: str = "") -> str:
    """The ``README.md`` dataset card (Hugging Face YAML header and a Markdown body)."""
    d = manifest.definition()
    t = manifest.totals
    per_image = t["bytes"] / max(1, t["samples"]) / 1024
    family = d.family
    names = [s.name for s in manifest.shards]
    kind = d.kind
    features = kind.hf_features()
    header = {
        "pretty_name": manifest.name,
        "license": manifest.license.lower(),
        "task_categories": [kind.hf_task],
        "task_ids": [kind.hf_task_id],
        "size_categories": [size_category(t["samples"])],
        "tags": _tags(manifest),
        "configs": [{"config_name": "default", "data_files": [{"split": "train", "path": names}]}],
        "dataset_info": {
            "features": features,
            "splits": [{"name": "train", "num_bytes": t["bytes"], "num_examples": t["samples"]}],
            "download_size": t["bytes"],
            "dataset_size": t["bytes"],
        },
    }
    where = url or "<URL of this folder>"
    settings = family.describe_settings(d.render)
    body = f"""# {manifest.name}

![preview]({PREVIEW_NAME})

A formula-driven supervised learning (FDSL) dataset: every image is rendered from a formula, every
label is the formula's category. **No real image and no personal data is involved**, which is the
point of FDSL: no privacy, copyright or labelling cost.

| | |
|---|---|
| family | `{family.name}`: {family.paper} |
| categories | {t["categories"]:,} ({d.categories.name}, {d.categories.content_hash}) |
| instances per category | {t["instances_per_category"]:,} |
| {kind.noun}s | {t["samples"]:,} ({t["diverged"]} diverged) |
| shards | {t["shards"]:,} WebDataset tars, {t["bytes"] / 1e6:,.1f} MB ({per_image:.1f} KiB per {kind.noun}) |
| render settings | {settings} |
| version | `{manifest.version}` ({manifest.fingerprint}) |
| license | {manifest.license} |
| made by | fractalshards {manifest.generator.get("version", "")} |

Each sample is {kind.member_doc} and `<key>.json`
(everything needed to render it again); keys are `<category:06d>-<instance:04d>`. `{MANIFEST_NAME}`
lists every shard with its sha256; `croissant.json` is Croissant 1.1 metadata.

## Use it

```python
from fractalshards import FractalLoader, FractalStream   # pip install fractalshards

stream = FractalStream("{where}")           # verified, cached once per node, resumable
loader = FractalLoader(stream, batch_size=256, num_workers=8)
```

```python
import datasets                                              # Hugging Face datasets
ds = datasets.load_dataset("webdataset", data_files={{"train": ["{where}/{names[0]}", ...]}}, split="train")
```

Plain `webdataset`, `tar` and Ray Data (`ray.data.read_webdataset`) read the shards as they are.

## Rebuild it

The dataset is a pure function of its definition: this rebuilds it byte for byte, and checks it.

```sh
fractalshards build --like {where} --out ./{manifest.name}
fractalshards verify {where} --render-sample 100
```
"""
    return "---\n" + _yaml(header) + "---\n\n" + body


def _yaml(value: object, indent: int = 0) -> str:
    # A small YAML writer for the card header (dicts, lists, scalars); strings are JSON-quoted, which is valid YAML.
    pad = " " * indent
    if isinstance(value, dict):
        lines = []
        for k, v in value.items():
            if isinstance(v, (dict, list)) and v:
                lines.append(f"{pad}{k}:\n" + _yaml(v, indent + 2))
            else:
                lines.append(f"{pad}{k}: {_scalar(v)}\n")
        return "".join(lines)
    if isinstance(value, list):
        lines = []
        for v in value:
            if isinstance(v, dict) and v:
                inner = _yaml(v, indent + 2)
                lines.append(f"{pad}- " + inner[indent + 2 :])
            elif isinstance(v, list) and v:
                lines.append(f"{pad}-\n" + _yaml(v, indent + 2))
            else:
                lines.append(f"{pad}- {_scalar(v)}\n")
        return "".join(lines)
    return f"{pad}{_scalar(value)}\n"


def _scalar(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, (dict, list)):
        return "{}" if isinstance(value, dict) else "[]"
    return json.dumps(str(value))


def write_card(manifest: DatasetManifest, shards: Store, out: Store, url: str = "", preview: bool = True) -> list[str]:
    """Write ``README.md``, ``croissant.json`` and (with ``preview``) ``preview.png`` into ``out``.

    ``shards`` is where the dataset's shards are read from for the preview grid.
    Returns the names written.
    """
    from .preview import grid_from_shards

    written = []
    if preview:
        family = _family(manifest)
        rows = min(4, manifest.totals["categories"])
        cols = min(6, manifest.totals["instances_per_category"]) if family.instances_per_category > 1 else 1
        # A card shows what the dataset looks like: its near-blank diverged samples are left out.
        grid = grid_from_shards(
            manifest, shards, rows if cols > 1 else min(16, manifest.totals["categories"]), cols, tile=96, diverged="skip"
        )
        buf = io.BytesIO()
        grid.save(buf, format="PNG", optimize=True)
        out.write_bytes(PREVIEW_NAME, buf.getvalue())
        written.append(PREVIEW_NAME)
    out.write_bytes(CROISSANT_NAME, (json.dumps(croissant(manifest, url), indent=1) + "\n").encode())
    out.write_bytes(CARD_NAME, card_markdown(manifest, url).encode())
    return written + [CROISSANT_NAME, CARD_NAME]
