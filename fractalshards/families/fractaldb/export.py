"""FractalDB's official CSV release format: one ``%05d.csv`` file per category, rows ``a,b,c,d,e,f,p``."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from .ifs import IFS

__all__ = ["OFFICIAL_CSV", "official_csv", "write_official_csv"]

#: The name of the format, as ``fractalshards search --format`` takes it.
OFFICIAL_CSV = "official-csv"


def official_csv(system: IFS) -> str:
    """A category in the official CSV format: rows ``a,b,c,d,e,f,p`` as ``%.18e``."""
    return "".join(",".join(f"{v:.18e}" for v in row) + "\n" for row in system.to_rows())


def write_official_csv(manifest, out_dir: str | os.PathLike) -> list[Path]:
    """Write ``out_dir/00000.csv ...`` of an IFS family's category manifest, as in the official release;
    all files or none.

    The files are written into a temporary folder beside ``out_dir`` and moved in
    at the end, so an interrupted run leaves nothing half-written.
    """
    systems = [c.system for c in manifest.categories]
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    written = []
    try:
        for cat, system in zip(manifest.categories, systems):
            (tmp / f"{cat.index:05d}.csv").write_text(official_csv(system))
        for cat in manifest.categories:
            name = f"{cat.index:05d}.csv"
            os.replace(tmp / name, out / name)
            written.append(out / name)
    finally:
        for leftover in tmp.iterdir():
            leftover.unlink()
        tmp.rmdir()
    return written
