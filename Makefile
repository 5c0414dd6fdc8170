# Quick start: `make demo` and `make test`; both create .venv on first use.
PYTHON ?= python3
VENV ?= .venv
# A CPU build of torch by default (these machines have it on local disk);
# override for a CUDA build, e.g. `make TORCH_SPEC='torch==2.13.0' TORCH_INDEX=...`.
TORCH_SPEC ?= torch==2.13.0
PIP_FLAGS ?= --disable-pip-version-check -q
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO_OUT ?= out/demo
DEMO_DATA ?= data/fractaldb-100

# Benchmarks run in their own venv: LitData and Mosaic Streaming (the `bench` extra) need a
# torchvision that imports, and PyPI's does not beside the CPU torch 2.13.0. On x86_64 these
# machines hold torch 2.14.1 + torchvision 0.29.1 on local disk (aarch64: torch==2.9.1 torchvision==0.24.1).
BENCH_VENV ?= .venv-bench
BENCH_TORCH_SPEC ?= torch==2.14.1 torchvision==0.29.1
BENCH_BIN := $(BENCH_VENV)/bin
BENCH_STAMP := $(BENCH_VENV)/.installed

# Training runs in its own venv: timm needs a torchvision that imports, and PyPI's does not beside
# the CPU torch 2.13.0; these machines hold torch 2.14.1 + torchvision 0.29.1 on local disk
# (a CUDA build, which runs on the CPU too). make demo and make test set it up.
TRAIN_VENV ?= .venv-train
TRAIN_TORCH_SPEC ?= $(BENCH_TORCH_SPEC)
TRAIN_BIN := $(TRAIN_VENV)/bin
TRAIN_STAMP := $(TRAIN_VENV)/.installed

.PHONY: install train-install test demo bench bench-install bench-stream manifests clean

install: $(STAMP)

# torch goes first, pinned, so that nothing later pulls an unpinned CUDA build;
# s3fs, aiobotocore and boto3 resolve together (their pins are tight).
$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install $(PIP_FLAGS) --upgrade pip
	$(BIN)/python -m pip install $(PIP_FLAGS) "$(TORCH_SPEC)"
	$(BIN)/python -m pip install $(PIP_FLAGS) "$(TORCH_SPEC)" -e ".[dev]"
	touch $(STAMP)

train-install: $(TRAIN_STAMP)

$(TRAIN_STAMP): pyproject.toml Makefile
	test -x $(TRAIN_BIN)/python || $(PYTHON) -m venv $(TRAIN_VENV)
	$(TRAIN_BIN)/python -m pip install $(PIP_FLAGS) --upgrade pip
	$(TRAIN_BIN)/python -m pip install $(PIP_FLAGS) $(TRAIN_TORCH_SPEC)
	$(TRAIN_BIN)/python -m pip install $(PIP_FLAGS) $(TRAIN_TORCH_SPEC) -e ".[train]" pytest psutil
	touch $(TRAIN_STAMP)

# Everything but training in .venv (CPU torch); the training tests (tests/train) in .venv-train.
test: install train-install
	$(BIN)/python -m pytest -q --ignore=tests/train
	$(TRAIN_BIN)/python -m pytest -q tests/train

# The main job end to end on the embedded local Ray: FractalDB-100, 10 instances per
# category, 362 px, into ./data; then inspect it and preview it from its shards.
demo: install train-install
	mkdir -p $(DEMO_OUT)
	# A fresh build each time (seconds): a demo dataset left by an older version may be of
	# another definition (e.g. another PNG encoder), which build rightly refuses to mix.
	rm -rf $(DEMO_DATA)
	$(BIN)/fractalshards build --preset fractaldb-100 --instances 10 --shard-size 250 --out $(DEMO_DATA)
	$(BIN)/fractalshards info $(DEMO_DATA)
	$(BIN)/fractalshards preview $(DEMO_DATA) --categories 8 --instances 8 --out $(DEMO_OUT)/preview-shards.png
	$(BIN)/fractalshards search --mode native --categories 16 --out $(DEMO_OUT)/native-16.json
	$(BIN)/fractalshards preview --manifest $(DEMO_OUT)/native-16.json --categories 8 --instances 8 --color color --out $(DEMO_OUT)/preview-native.png
	$(TRAIN_BIN)/python jobs/pretrain.py --data $(DEMO_DATA) --arch resnet18 --batch-size 32 --resize 64 --crop 56 \
		--epochs 4 --lr 0.05 --lr-steps 3 --workers 2 --log-every 10 --no-resume --checkpoint-dir $(DEMO_OUT)/pretrain
	@echo "demo: dataset in $(DEMO_DATA); pictures in $(DEMO_OUT)/preview-shards.png and preview-native.png;"
	@echo "      pre-trained checkpoint in $(DEMO_OUT)/pretrain/last.pt (the loss lines above fall)"

bench-install: $(BENCH_STAMP)

$(BENCH_STAMP): pyproject.toml Makefile
	test -x $(BENCH_BIN)/python || $(PYTHON) -m venv $(BENCH_VENV)
	$(BENCH_BIN)/python -m pip install $(PIP_FLAGS) --upgrade pip
	$(BENCH_BIN)/python -m pip install $(PIP_FLAGS) $(BENCH_TORCH_SPEC)
	$(BENCH_BIN)/python -m pip install $(PIP_FLAGS) $(BENCH_TORCH_SPEC) -e ".[dev]"
	# The peers last: with the S3 stack already resolved, pip does not backtrack through boto versions.
	$(BENCH_BIN)/python -m pip install $(PIP_FLAGS) $(BENCH_TORCH_SPEC) -e ".[bench]"
	touch $(BENCH_STAMP)

bench: install bench-install
	$(BIN)/python benchmarks/render.py
	$(BIN)/python benchmarks/search.py
	$(BIN)/python benchmarks/build.py
	$(BIN)/python benchmarks/render_stream.py
	$(BENCH_BIN)/python benchmarks/stream.py

bench-stream: bench-install
	$(BENCH_BIN)/python benchmarks/stream.py

# Regenerate the committed manifest (about 40 s on 2 cores); the tests check it against the official files.
# The committed official category sets (about 1 + 4 + 2 minutes on 2 cores).
manifests: install
	$(BIN)/fractalshards search --mode official --categories 1000 --name fractaldb-1k --out manifests/fractaldb-1k.json
	$(BIN)/fractalshards search --family visualatom --mode official --categories 1000 --name visualatom-1k --out manifests/visualatom-1k.json
	$(BIN)/fractalshards search --family rcdb --mode official --categories 1000 --name rcdb-1k --out manifests/rcdb-1k.json

clean:
	rm -rf $(VENV) $(BENCH_VENV) $(TRAIN_VENV) out data .pytest_cache
