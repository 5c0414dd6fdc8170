"""The command line: outputs, and one-line errors that leave nothing behind."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import read_vectors
from PIL import Image

from fractalshards.cli import main
from fractalshards.definition import DatasetDefinition
from fractalshards.families.fractaldb.instances import Instance
from fractalshards.families.fractaldb.render import RenderSettings, render
from fractalshards.png import decode as decode_png

CSV_HASHES = dict(read_vectors("official-csv-sha256-first10.txt"))


def _run(args, capsys):
    code = main(["--no-progress", *args])
    captured = capsys.readouterr()
    return code, captured.err


def test_console_script_help():
    exe = Path(sys.executable).parent / "fractalshards"
    for sub in ([], ["search"], ["render"], ["preview"]):
        out = subprocess.run([str(exe), *sub, "--help"], capture_output=True, text=True)
        assert out.returncode == 0
        assert "usage: fractalshards" in out.stdout


def test_search_official_csv_files(tmp_path, capsys):
    code, _ = _run(
        ["search", "--mode", "official", "--categories", "3", "--format", "official-csv", "--out", str(tmp_path / "csv")], capsys
    )
    assert code == 0
    files = sorted(p.name for p in (tmp_path / "csv").iterdir())
    assert files == ["00000.csv", "00001.csv", "00002.csv"]
    for name in files:
        assert hashlib.sha256((tmp_path / "csv" / name).read_bytes()).hexdigest() == CSV_HASHES[name]


def test_search_manifest_then_render_from_it(tmp_path, capsys):
    manifest = tmp_path / "m.json"
    code, _ = _run(["search", "--categories", "2", "--points", "20000", "--canvas", "256", "--out", str(manifest)], capsys)
    assert code == 0 and manifest.is_file()
    png = tmp_path / "one.png"
    code, _ = _run(["render", "--manifest", str(manifest), "--category", "1", "--instance", "7", "--out", str(png)], capsys)
    assert code == 0
    from fractalshards.categories import CategoryManifest

    m = CategoryManifest.load(manifest)
    expected = render(m.category(1).system, 1, Instance(7, 0, 0), RenderSettings(mode="native")).image
    np.testing.assert_array_equal(decode_png(png.read_bytes()), expected)


def test_render_by_official_numbers_matches_the_official_pixels(tmp_path, capsys):
    png = tmp_path / "r.png"
    code, _ = _run(
        [
            "render",
            "--preset",
            "fractaldb-1k",
            "--category",
            "7",
            "--weight",
            "13",
            "--flip",
            "2",
            "--patch",
            "0",
            "--draw",
            "point",
            "--out",
            str(png),
        ],
        capsys,
    )
    assert code == 0
    digest = {r[0]: r[2] for r in read_vectors("official-point-gray-pixels-sha256-sample.txt")}["00007_13_count_0_flip2.png"]
    assert hashlib.sha256(decode_png(png.read_bytes()).tobytes()).hexdigest() == digest


def test_preview_grid(tmp_path, capsys):
    png = tmp_path / "grid.png"
    code, _ = _run(
        [
            "preview",
            "--preset",
            "fractaldb-100",
            "--categories",
            "2",
            "--instances",
            "3",
            "--tile",
            "64",
            "--points",
            "20000",
            "--out",
            str(png),
        ],
        capsys,
    )
    assert code == 0
    with Image.open(png) as im:
        assert im.mode == "RGB"
        w, h = im.size
    assert w > 3 * 64 and h > 2 * 64
    arr = np.asarray(Image.open(png))
    assert arr.std() > 5  # not a blank picture


@pytest.mark.parametrize(
    "args,needle",
    [
        (["render", "--preset", "nope", "--category", "0", "--instance", "0"], "preset"),
        (["render", "--preset", "fractaldb-100", "--category", "100", "--instance", "0"], "category"),
        (["render", "--preset", "fractaldb-100", "--category", "0", "--instance", "1000"], "instance"),
        (["render", "--preset", "fractaldb-100", "--category", "0", "--weight", "3"], "instance"),
        (["preview", "--preset", "fractaldb-100", "--categories", "101"], "categories"),
        (["render", "--manifest", "/nonexistent/m.json", "--category", "0", "--instance", "0"], "manifest"),
    ],
)
def test_bad_input_is_one_line_and_writes_nothing(tmp_path, capsys, args, needle):
    out = tmp_path / "x.png"
    code, err = _run([*args, "--out", str(out)], capsys)
    assert code == 2
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and needle in lines[0] and "error" in lines[0]
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "args", [["search", "--categories", "-3"], ["preview", "--preset", "fractaldb-100", "--instances", "-1"]]
)
def test_negative_counts_are_rejected(tmp_path, args):
    out = subprocess.run(
        [str(Path(sys.executable).parent / "fractalshards"), *args, "--out", str(tmp_path / "o")], capture_output=True, text=True
    )
    assert out.returncode == 2
    assert "is not allowed; use 1 or more" in out.stderr
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("fmt", ["manifest", "official-csv"])
def test_unwritable_output_fails_before_work(tmp_path, capsys, fmt):
    # /sys refuses new files even to root; permission bits alone would not stop root.
    target = "/sys/fractalshards-test.json" if fmt == "manifest" else "/sys/fractalshards-test-csv"
    code, err = _run(["search", "--mode", "official", "--categories", "1000", "--format", fmt, "--out", target], capsys)
    assert code == 2
    assert "out:" in err and "not writable" in err
    assert not Path(target).exists()


def test_missing_output_folder(tmp_path, capsys):
    target = tmp_path / "missing" / "m.json"
    code, err = _run(["search", "--categories", "1", "--out", str(target)], capsys)
    assert code == 2 and "does not exist" in err
    assert list(tmp_path.iterdir()) == []


def test_help_gives_every_familys_own_defaults(capsys):
    import pytest

    with pytest.raises(SystemExit):
        main(["build", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    # Generated from the settings fields and each family's overrides: 1p-frac renders at 512 px.
    assert "image size in pixels (defaults: fractaldb 362, 1p-frac 512, exfractaldb 224, segrcdb 512)" in text
    assert "chaos-game points (defaults: fractaldb 200000, 1p-frac 100000)" in text


def test_a_format_the_family_does_not_write_is_refused_before_anything_is_made(tmp_path, capsys):
    out = tmp_path / "csv"
    assert (
        main(["--no-progress", "search", "--family", "rcdb", "--categories", "2", "--format", "official-csv", "--out", str(out)])
        == 2
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["fractalshards search: error: format: the rcdb family has no 'official-csv' format; use --format manifest"]
    assert not out.exists()


def test_every_subcommand_help_ends_with_examples_that_parse(capsys):
    import shlex

    from fractalshards.cli import EXAMPLES, build_parser

    parser = build_parser()
    commands = parser._subparsers._group_actions[0].choices  # the subcommands argparse registered
    assert set(EXAMPLES) == set(commands)
    for name in commands:
        with pytest.raises(SystemExit):
            main([name, "--help"])
        out = capsys.readouterr().out
        assert "examples:\n  fractalshards " in out, name
        for line in EXAMPLES[name]:
            argv = shlex.split(line)[1:]
            parser.parse_args(argv)  # the flags and their values exist as written


def test_a_count_below_one_gets_the_advice_that_fits(capsys):
    for value in ("0", "-5"):
        with pytest.raises(SystemExit) as exit_:
            main(["build", "--preset", "fractaldb-100", "--instances", value, "--out", "x"])
        assert exit_.value.code == 2
        assert f"{value} is not allowed; use 1 or more" in capsys.readouterr().err


def test_a_small_build_gets_a_shard_per_worker_unless_the_shard_size_is_given(caplog):
    from fractalshards.cli import _small_build_shard_size, build_parser

    parser = build_parser()
    definition = DatasetDefinition.from_preset("fractaldb-100", categories=20, instances=10)  # 200 samples, 1 shard
    args = parser.parse_args(["build", "--preset", "fractaldb-100", "--out", "x", "--workers", "4"])
    with caplog.at_level("INFO"):
        small = _small_build_shard_size(definition, args)
    assert (small.shard_size, small.num_shards) == (50, 4) and "shard size: 50 (the default 1000" in caplog.text
    for argv in (["--shard-size", "1000"], ["--workers", "0"]):
        given = parser.parse_args(["build", "--preset", "fractaldb-100", "--out", "x", "--workers", "4", *argv])
        assert _small_build_shard_size(definition, given).shard_size == 1000
    big = DatasetDefinition.from_preset("fractaldb-100", instances=40)  # 4,000 samples: 4 shards already
    assert _small_build_shard_size(big, args) is big


def test_inspect_shows_shards_samples_records_and_pictures_through_the_readers_checks(built_dataset, tmp_path, capsys):
    import json
    import shutil

    from fractalshards.stream import FractalStream

    assert main(["inspect", str(built_dataset), "--json"]) == 0
    shards = json.loads(capsys.readouterr().out)
    assert [s["name"] for s in shards] == ["shard-000000.tar", "shard-000001.tar", "shard-000002.tar"]
    assert main(["inspect", str(built_dataset), "--shard", "1", "--json"]) == 0
    shard = json.loads(capsys.readouterr().out)
    assert len(shard["samples"]) == 5 and set(shard["samples"][0]["members"]) == {"cls", "json", "png"}
    key, label = shard["samples"][2]["key"], shard["samples"][2]["label"]
    assert label == int(key.split("-")[0])
    out = tmp_path / "sample.png"
    assert main(["inspect", str(built_dataset), "--sample", key, "--out", str(out), "--json"]) == 0
    sample = json.loads(capsys.readouterr().out)
    assert sample["shard"] == "shard-000001.tar" and sample["record"]["key"] == key and sample["label"] == label
    # The picture is the image every reader decodes (grey, as stored).
    keys = [s["__key__"] for s in FractalStream(str(built_dataset), shuffle=False, decode="raw")]
    decoded = [image for image, _ in FractalStream(str(built_dataset), shuffle=False, decode="numpy")]
    assert np.array_equal(np.asarray(Image.open(out).convert("RGB")), decoded[keys.index(key)])
    # A shard altered after the manifest was written is refused, as every reader refuses it.
    copy = tmp_path / "copy"
    shutil.copytree(built_dataset, copy)
    data = bytearray((copy / "shard-000001.tar").read_bytes())
    data[600] ^= 1
    (copy / "shard-000001.tar").write_bytes(bytes(data))
    assert main(["inspect", str(copy), "--shard", "1"]) == 1
    assert "does not match the manifest" in capsys.readouterr().err
    assert main(["inspect", str(built_dataset), "--sample", "999999-0000"]) == 2
    assert main(["inspect", str(built_dataset), "--out", str(tmp_path / "x.png")]) == 2


def test_progress_in_a_log_file_is_whole_lines_and_on_a_terminal_a_bar(tmp_path):
    import pty

    command = [str(Path(sys.executable).parent / "fractalshards"), "build", "--preset", "fractaldb-100", "--categories",
               "2", "--instances", "5", "--shard-size", "4", "--workers", "0", "--size", "32", "--points", "500"]  # fmt: skip
    env = {**os.environ, "FRACTALSHARDS_PROGRESS_INTERVAL": "0"}
    with open(tmp_path / "log.txt", "wb") as log_file:  # a Ray job's or CI's log: not a terminal
        done = subprocess.run([*command, "--out", str(tmp_path / "a")], stderr=log_file, env=env, timeout=120)
    assert done.returncode == 0
    text = (tmp_path / "log.txt").read_bytes()
    assert b"\r" not in text and b"build: 100%" in text and b"3/3" in text
    # On a terminal: tqdm's bar, redrawn in place.
    pid, fd = pty.fork()
    if pid == 0:  # the child: stdout and stderr are the terminal, 40 rows of 100 columns
        import fcntl
        import struct
        import termios

        fcntl.ioctl(1, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 100, 0, 0))
        os.execve(command[0], [*command, "--out", str(tmp_path / "b")], env)
    out = b""
    while True:
        try:
            chunk = os.read(fd, 4096)
        except OSError:
            break
        if not chunk:
            break
        out += chunk
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0 and b"\rbuild: 100%" in out  # redrawn in place


def test_python_builds_show_progress_in_an_interactive_session_only(tmp_path):
    code = (
        "import fractalshards as fs\n"
        "d = fs.DatasetDefinition.from_preset('fractaldb-100', categories=2, instances=3, shard_size=3,"
        " render={'size': 32, 'points': 500})\n"
        "fs.build(d, {out!r}, workers=0)\n"
    )
    for flag, shown in (([], False), (["-i"], True)):
        out = tmp_path / f"ds{len(flag)}"
        done = subprocess.run(
            [sys.executable, *flag, "-c", code.replace("{out!r}", repr(str(out)))], stdin=subprocess.DEVNULL, capture_output=True,
            text=True, timeout=120, env={**os.environ, "FRACTALSHARDS_PROGRESS_INTERVAL": "0"},
        )  # fmt: skip
        assert done.returncode == 0, done.stderr[-2000:]
        assert ("build: 100%" in done.stderr) is shown and "\r" not in done.stderr


def test_the_readme_commands_parse_and_build_into_folders_of_their_own():
    import re
    import shlex

    from fractalshards.cli import build_parser

    root = Path(__file__).resolve().parent.parent
    readme = (root / "README.md").read_text()
    demo = re.search(r"^DEMO_DATA \?= (\S+)", (root / "Makefile").read_text(), re.M).group(1)
    parser = build_parser()
    outs: dict[str, str] = {demo: "make demo"}
    for block in re.findall(r"```sh\n(.*?)```", readme, re.S):
        for line in block.splitlines():
            line = line.split("  #")[0].strip()
            if not line.startswith("fractalshards "):
                continue
            args = parser.parse_args(shlex.split(line)[1:])  # every flag as written exists
            if args.command == "build":
                assert args.out not in outs, f"{line!r} builds into {args.out}, as {outs.get(args.out)!r} does"
                outs[args.out] = line
    python = re.search(r"```python\n(.*?)```", readme.split("## Python", 1)[1], re.S).group(1)
    built = re.findall(r'fs\.build\(definition, "([^"]+)"', python)
    assert built and all(path not in outs for path in built)  # the Python example has a folder of its own too
    assert '"cuda"' not in python.replace('"cuda" if torch.cuda.is_available()', "")  # CPU unless there is a GPU
