"""Entry point for `ray job submit`: build shards on the cluster the job runs in.

    ray job submit --address http://HEAD:8265 --working-dir . \
        --runtime-env-json '{"env_vars": {"AWS_ACCESS_KEY_ID": "...", "AWS_SECRET_ACCESS_KEY": "...",
                                          "AWS_ENDPOINT_URL": "http://minio:9000", "RAY_AUTH_MODE": "disabled"}}' \
        -- python jobs/build_shards.py --preset fractaldb-1k --out s3://bucket/prefix

Takes the options of `fractalshards build`; inside a job it joins the job's cluster
(RAY_ADDRESS is set by Ray), and the job's runtime env reaches every worker.
"""

from __future__ import annotations

import sys
from pathlib import Path

# With --working-dir the package sits beside this folder, not on sys.path.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from fractalshards.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(["build", *sys.argv[1:]]))
