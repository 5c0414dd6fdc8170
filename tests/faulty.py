"""A store that fails on purpose: fault injection lives in the tests, not in the library."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from fractalshards.storage import Store, open_store


@dataclass
class FaultyStore(Store):
    """Writing a name listed in ``faults`` fails once: ``{name: ("kill" | "raise", marker path)}``.

    The first such write creates the marker (so a retry runs normally), then kills its
    own process (like a lost worker or ``kill -9``) or raises ``RuntimeError``. Ray
    ships it to workers by value (``register_pickle_by_value``), so nothing of it is
    needed in the library.
    """

    faults: dict = field(default_factory=dict)

    @classmethod
    def open(cls, url: str, faults: dict, storage_options: dict | None = None) -> FaultyStore:
        return cls(**vars(open_store(url, storage_options)), faults=faults)

    def write_bytes(self, name: str, data: bytes) -> None:
        how, marker = self.faults.get(name, (None, None))
        if how is not None and not os.path.exists(marker):
            with open(marker, "w") as fh:
                fh.write(str(os.getpid()))
            if how == "kill":
                os._exit(17)
            raise RuntimeError(f"injected failure writing {name}")
        super().write_bytes(name, data)


def ship_by_value() -> None:
    """Let Ray workers unpickle FaultyStore without importing this test module."""
    import sys

    import ray.cloudpickle

    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])


@dataclass
class SlowStore(Store):
    """Each shard write waits ``delay`` seconds and leaves ``<log_dir>/<shard>.<node id>`` behind:
    slow enough to kill a node mid-build, and a record of where each task ran."""

    delay: float = 0.5
    log_dir: str = ""

    @classmethod
    def open(cls, url: str, delay: float, log_dir: str) -> SlowStore:
        return cls(**vars(open_store(url)), delay=delay, log_dir=log_dir)

    def write_bytes(self, name: str, data: bytes) -> None:
        if name.startswith("shard-") and self.log_dir:
            import time

            import ray

            node = ray.get_runtime_context().get_node_id() if ray.is_initialized() else "inline"
            open(os.path.join(self.log_dir, f"{name}.{node}"), "w").close()
            time.sleep(self.delay)
        super().write_bytes(name, data)
