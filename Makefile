# Quick start: `make demo` and `make test`; both create .venv on first use.
PYTHON ?= python3
VENV ?= .venv
# One environment for everything, training included: torch 2.14.1 + torchvision 0.29.1 (a CUDA
# build that also runs on the CPU; these machines hold both on local disk). On aarch64 use
# `make TORCH_SPEC='torch==2.9.1 torchvision==0.24.1' ...`; any torch with a matching torchvision works.
TORCH_SPEC ?= torch==2.14.1 torchvision==0.29.1
PIP_FLAGS ?= --disable-pip-version-check -q
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
BENCH_STAMP := $(VENV)/.installed-bench
DEMO_OUT ?= out/demo
DEMO_DATA ?= data/fractaldb-100
SITE ?= out/site

.PHONY: install test fuzz test-gpu lint docs docs-check demo bench bench-install bench-stream bench-pipeline bench-gpu manifests clean

install: $(STAMP)

# torch goes first, pinned, so that nothing later pulls an unpinned CUDA build;
# s3fs, aiobotocore and boto3 resolve together (their pins are tight).
$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install $(PIP_FLAGS) --upgrade pip
	$(BIN)/python -m pip install $(PIP_FLAGS) $(TORCH_SPEC)
	$(BIN)/python -m pip install $(PIP_FLAGS) $(TORCH_SPEC) -e ".[dev]"
	touch $(STAMP)

# ruff, and the layers of docs/modules.md as import-linter contracts (pyproject.toml).
lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

docs: install
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet --site-dir $(SITE)

# The built site opened page by page from disk in headless Chromium (Debian's, installed when
# missing): console errors, broken links and images, cut tables, and a search for FractalStream
# fail it (tools/check_site.py); screenshots of the index and of a wide page go to out/.
CHROMIUM ?= /usr/bin/chromium
$(CHROMIUM):
	apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null

docs-check: docs $(CHROMIUM)
	$(BIN)/python tools/check_site.py --site $(SITE) --out out --chromium $(CHROMIUM)

# Lint, the docs site (strict: a broken link fails) and the whole suite, once, in TEST_WORKERS
# processes (pytest-xdist, work stealing: CI has two cores; TEST_WORKERS=0 runs it in this one).
TEST_WORKERS ?= 2
test: lint docs-check
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist worksteal

# Property-based fuzzing of every stored format, longer and random (`make test` runs a fixed-seed
# budget of the same tests: the `ci` profile of tests/conftest.py).
fuzz: install
	HYPOTHESIS_PROFILE=fuzz $(BIN)/python -m pytest -q -n $(TEST_WORKERS) tests/fuzz tests/test_png_strict.py tests/test_statecache.py tests/test_tar_fuzz.py

# On a GPU machine: the tests marked `gpu` (the kernels on the device, against the CPU).
test-gpu: install
	FRACTALSHARDS_TEST_GPU=1 $(BIN)/python -m pytest -q -m gpu

# The main job end to end on the embedded local Ray: FractalDB-100, 10 instances per
# category, 362 px, into ./data; then inspect it, preview it from its shards and pre-train on it.
demo: install
	mkdir -p $(DEMO_OUT)
	# --overwrite: a demo dataset left by an older version may be of another definition (another
	# PNG encoder, say), which build refuses to mix; this one replaces it (seconds).
	$(BIN)/fractalshards build --preset fractaldb-100 --instances 10 --shard-size 250 --overwrite --out $(DEMO_DATA)
	$(BIN)/fractalshards info $(DEMO_DATA)
	$(BIN)/fractalshards preview $(DEMO_DATA) --categories 8 --instances 8 --out $(DEMO_OUT)/preview-shards.png
	$(BIN)/fractalshards search --mode native --categories 16 --out $(DEMO_OUT)/native-16.json
	$(BIN)/fractalshards preview --manifest $(DEMO_OUT)/native-16.json --categories 8 --instances 8 --color color --out $(DEMO_OUT)/preview-native.png
	$(BIN)/python jobs/pretrain.py --data $(DEMO_DATA) --arch resnet18 --batch-size 32 --resize 64 --crop 56 \
		--epochs 4 --lr 0.05 --lr-steps 3 --workers 2 --log-every 10 --no-resume --checkpoint-dir $(DEMO_OUT)/pretrain
	@echo "demo: dataset in $(DEMO_DATA); pictures in $(DEMO_OUT)/preview-shards.png and preview-native.png;"
	@echo "      pre-trained checkpoint in $(DEMO_OUT)/pretrain/last.pt (the loss lines above fall)"

# The benchmark peers (LitData, Mosaic Streaming: the `bench` extra) join the same venv, only here.
bench-install: $(BENCH_STAMP)

$(BENCH_STAMP): $(STAMP)
	$(BIN)/python -m pip install $(PIP_FLAGS) $(TORCH_SPEC) -e ".[dev,bench]"
	touch $(BENCH_STAMP)

bench: bench-install
	$(BIN)/python benchmarks/render.py
	$(BIN)/python benchmarks/search.py
	$(BIN)/python benchmarks/build.py
	$(BIN)/python benchmarks/render_stream.py
	$(BIN)/python benchmarks/stream.py
	$(BIN)/python benchmarks/pipeline.py

bench-stream: bench-install
	$(BIN)/python benchmarks/stream.py

# The whole input path (store -> network input), every path and peer, local disk and S3: about 12 minutes here.
bench-pipeline: bench-install
	$(BIN)/python benchmarks/pipeline.py

# The device check of GPU rendering (on a GPU machine, under 5 minutes): images/s per family, pixel
# equality with the CPU, training from RenderLoader against synthetic inputs.
bench-gpu: install
	$(BIN)/python benchmarks/gpu.py

# The committed official category sets (about 1 + 4 + 2 + 1 minutes on 2 cores); the tests check them
# against the official files.
manifests: install
	$(BIN)/fractalshards search --mode official --categories 1000 --name fractaldb-1k --out manifests/fractaldb-1k.json
	$(BIN)/fractalshards search --family visualatom --mode official --categories 1000 --name visualatom-1k --out manifests/visualatom-1k.json
	$(BIN)/fractalshards search --family rcdb --mode official --categories 1000 --name rcdb-1k --out manifests/rcdb-1k.json
	$(BIN)/fractalshards search --family segrcdb --mode official --categories 254 --name segrcdb --out manifests/segrcdb.json
	$(BIN)/fractalshards search --family exfractaldb --mode official --categories 1000 --name mv-fractaldb-1k --out manifests/mv-fractaldb-1k.json

clean:
	rm -rf $(VENV) .venv-bench .venv-train out data .pytest_cache
