"""Where a stream's samples come from, shard by shard: stored shards, or renders of the definition.

A source's :meth:`load` gives one shard, whose :meth:`get` gives its samples in stored order: the
members' bytes (``raw``), or what a loader yields, decoded by the definition's sample kind
(:mod:`fractalshards.kinds`). Both sources give the same samples, pixel for pixel:

- :class:`StoredSource` fetches whole shards (local files in place, remote ones through the node
  cache of :mod:`fractalshards.cache`), checks each against the manifest's sha256 and the
  definition's plan (:mod:`fractalshards.shardplan`), and slices out the samples asked for;
- :class:`RenderedSource` renders each sample from the definition on demand (no byte is read).

A GPU renders whole batches instead (:class:`fractalshards.gpu_renderer.GPURenderer`, used by
:class:`fractalshards.loader.RenderLoader`). No torch here but the kinds' decoding.
"""

from __future__ import annotations

import hashlib
import time
from typing import Any

from .cache import ShardCache
from .definition import DatasetDefinition
from .errors import ShardIntegrityError, TransferError
from .kinds import Decoding
from .shardplan import ShardPlan
from .shards import render_sample, sample_data
from .storage import Store, redact

__all__ = ["FETCH_ATTEMPTS", "StoredSource", "StoredShard", "RenderedSource", "RenderedShard"]

#: Whole-shard fetch attempts (each on top of the store client's own request retries).
FETCH_ATTEMPTS = 3


class StoredSource:
    """Loads whole shards for one process: local files directly, remote ones through the node cache."""

    def __init__(
        self,
        store: Store,
        hashes: dict[str, str],
        definition: DatasetDefinition,
        verify: bool,
        cache: ShardCache | None,
        version: str,
        *,
        sizes: dict[str, int],
    ) -> None:
        self.store = store.for_this_process()
        self.hashes, self.definition, self.verify, self.cache, self.version = hashes, definition, verify, cache, version
        #: Each shard's size as its manifest states it: no read goes past it.
        self.sizes = sizes

    def load(self, shard: str) -> StoredShard:
        """The shard's bytes and sample index; checked against the manifest (hash when verifying, count always)."""
        if self.cache is not None:
            data = self.cache.get(self.version, shard, self.hashes[shard], lambda: self._fetch(shard), size=self.sizes[shard])
        else:
            data = self._fetch(shard)
            if self.verify:
                digest = hashlib.sha256(data).hexdigest()
                if digest != self.hashes[shard]:
                    raise ShardIntegrityError(
                        f"{shard}: sha256 {digest[:16]}... does not match the manifest's {self.hashes[shard][:16]}... "
                        f"({len(data)} bytes read); the shard is truncated or altered"
                    )
        plan = ShardPlan.of(self.definition, self.definition.shard_index(shard))
        index = plan.index(data)  # keys, order and members; labels and headers as each sample is read
        return StoredShard(memoryview(data), index, self.store.url_of(shard), plan)

    def _fetch(self, shard: str) -> bytes:
        # The store's client retries each request; this bounds what is left (a connection
        # reset mid-body, a stalled read) to a few whole-shard attempts and one line naming the shard.
        for attempt in range(FETCH_ATTEMPTS):
            try:
                return self.store.read_bytes(shard, self.sizes[shard], exact=True, why="its manifest entry states")
            except FileNotFoundError as exc:
                raise ShardIntegrityError(f"{shard}: missing from {self.store.url}; the dataset is incomplete") from exc
            except ShardIntegrityError:  # what is stored is wrong (a link, a device): trying again changes nothing
                raise
            except Exception as exc:  # noqa: BLE001 - backends raise many types (botocore, aiohttp, OSError)
                if attempt + 1 == FETCH_ATTEMPTS:
                    message = redact(f"{type(exc).__name__}: {exc}", self.store.storage_options).splitlines()[0][:300]
                    raise TransferError(
                        f"{shard}: could not be fetched from {self.store.url} after {FETCH_ATTEMPTS} "
                        f"attempts ({message}); check the network and the endpoint"
                    ) from exc
                time.sleep(0.5 * 2**attempt)
        raise AssertionError("unreachable")


class StoredShard:
    """A loaded shard: its bytes, member index and plan (each sample is checked against it as it is read)."""

    def __init__(self, data: memoryview, index: list, url: str, plan: ShardPlan) -> None:
        self.data, self.index, self.url, self.plan = data, index, url, plan

    def get(self, i: int, decoding: Decoding | None) -> Any:
        """Sample ``i``: its members' bytes (``decoding`` None), else decoded by the plan's kind."""
        sample = self.index[i].read(self.data, self.url)
        self.plan.check_sample(i, sample)
        if decoding is None:
            return sample
        return self.plan.kind.decode(sample, self.plan.format, decoding, f"{self.plan.name}: sample {sample['__key__']!r}")


class RenderedSource:
    """Shards of a definition, rendered sample by sample on demand (nothing is read)."""

    def __init__(self, definition: DatasetDefinition, url: str, instance_offset: int = 0) -> None:
        self.definition, self.url = definition, url
        #: Added to every planned instance number (fresh instances: the epoch times K).
        self.instance_offset = instance_offset

    def load(self, shard: str) -> RenderedShard:
        """Shard ``shard`` of the plan (nothing is rendered until a sample is asked for)."""
        return RenderedShard(self.definition, self.definition.shard_index(shard), f"{self.url}#{shard}", self.instance_offset)


class RenderedShard:
    """A shard of a definition whose samples are rendered when asked for."""

    def __init__(self, definition: DatasetDefinition, index: int, url: str, instance_offset: int = 0) -> None:
        self.definition, self.pairs, self.url = definition, definition.shard_spec(index).pairs, url
        self.kind, self.format = definition.kind, definition.sample_format
        self.instance_offset = instance_offset

    def get(self, i: int, decoding: Decoding | None) -> Any:
        """Sample ``i``: exactly the stored shard's members (``decoding`` None: the encoders are
        deterministic), else the kind's decoding of the render itself (nothing encoded)."""
        category, instance = self.pairs[i]
        instance += self.instance_offset
        sample, rendered = render_sample(self.definition, category, instance, record=decoding is None)
        if decoding is None:
            sample["__url__"] = self.url
            sample.update(sample_data(self.definition, rendered))
            return sample
        return self.kind.decode_rendered(rendered, category, self.format, decoding)
