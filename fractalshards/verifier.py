"""Verify a dataset: every shard's bytes and sample count, and re-rendered samples' pixels."""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass, field

from .dataset import open_definition, open_manifest
from .errors import ShardIntegrityError, StoredDataError
from .limits import accepts_limits
from .progress import bar as progress_bar
from .progress import default_progress
from .shardplan import ShardPlan, read_planned

__all__ = ["VerifyReport", "verify"]


@dataclass
class VerifyReport:
    """Outcome of :func:`verify`: ``ok`` only when nothing differs."""

    url: str
    version: str
    shards: int = 0
    samples: int = 0
    rendered: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when every check passed."""
        return not self.problems


@accepts_limits
def verify(
    url: str,
    *,
    render_sample: int = 0,
    seed: int = 0,
    storage_options: dict | None = None,
    progress: bool | None = None,
    recipe: str | None = None,
) -> VerifyReport:
    """Check ``url`` against its manifest.

    Every shard is read whole: its size and sha256 must match the manifest, it must
    parse as a tar of safe member names, and hold the listed number of samples.
    Then ``render_sample`` samples, picked at random with ``seed``, are rendered
    again from the parameters in the manifest and compared pixel for pixel with the
    stored images (and their ``.cls`` and ``.json`` with what they should say).

    With ``recipe`` (a recipe file or URL, e.g. the published ``PREFIX@tag`` it was
    built from), the dataset's definition must be the recipe's, and samples are
    re-rendered from the recipe rather than from the dataset's own manifest.
    """
    progress = default_progress(progress)
    manifest, store = open_manifest(url, storage_options)
    report = VerifyReport(url, manifest.version)
    definition = manifest.definition()
    if recipe is not None:
        kind, document, _ = open_definition(recipe, storage_options)
        expected = document.definition_id if kind == "dataset" else document.version
        if expected != manifest.definition_id:
            report.problems.append(
                f"definition {manifest.definition_id} is not the recipe's ({expected}); this dataset was not built from {recipe}"
            )
            return report
        definition = document.definition() if kind == "dataset" else document.definition
    shards = manifest.shards
    total = sum(s.samples for s in shards)
    picks: dict[str, set[int]] = {}
    rng = random.Random(f"{manifest.version}:{seed}")
    for position in rng.sample(range(total), min(render_sample, total)):
        for s in shards:
            if position < s.samples:
                picks.setdefault(s.name, set()).add(position)
                break
            position -= s.samples
    bar = progress_bar(total=len(shards), desc="verify", unit="shard", enabled=progress)
    for s in shards:
        name = s.name
        bar.update(1)
        try:
            data = store.read_bytes(name, s.bytes, exact=True, why="the manifest states")
        except FileNotFoundError:
            report.problems.append(f"{name}: missing")
            continue
        except StoredDataError as exc:  # another size: not read past the manifest's
            report.shards += 1
            report.problems.append(f"{name}: {exc}")
            continue
        report.shards += 1
        digest = hashlib.sha256(data).hexdigest()
        if len(data) != s.bytes or digest != s.sha256:
            report.problems.append(
                f"{name}: {len(data)} bytes, sha256 {digest[:16]}...; the manifest says {s.bytes} bytes, {s.sha256[:16]}..."
            )
            continue  # nothing in a shard whose hash failed is read
        count = 0
        try:
            plan = ShardPlan.of(manifest.definition(), manifest.definition().shard_index(name))
            for index, sample in enumerate(read_planned(data, plan)):
                count += 1
                if index in picks.get(name, ()):
                    report.rendered += 1
                    report.problems.extend(_check_sample(plan, index, sample, definition))
        except ShardIntegrityError as exc:
            report.problems.append(str(exc))
            continue
        report.samples += count
        if count != s.samples:
            report.problems.append(f"{name}: {count} samples; the manifest says {s.samples}")
    bar.close()
    return report


def _check_sample(plan: ShardPlan, position: int, sample: dict, definition) -> list[str]:
    # The sample's key and label were checked against the plan as it was read; which sample it is comes
    # from the plan, and its record (read strictly) must say the same.
    category, instance = plan.pairs[position]
    where = f"{plan.name}:{plan.keys[position]}"
    kind = definition.kind
    try:
        meta = plan.record(position, sample)
    except ShardIntegrityError as exc:
        return [str(exc)]
    problems = []
    expected = definition.renderer.render(category, instance)
    problems += kind.compare(sample, expected, definition.sample_format, where)
    if bool(meta.get("diverged")) != expected.diverged:
        problems.append(f"{where}: 'diverged' is {meta.get('diverged')}, a fresh render says {expected.diverged}")
    return problems
