"""Entrypoint for `ray job submit`: the same job as `bonito-ray self-guide`, with the same flags.

    ray job submit --working-dir . -- python jobs/self_guide.py --spec jobs/examples/tasks/clause_party.yaml \
        --output s3://... --engine vllm --model ...

Inside a submitted job it joins that cluster; run directly, it starts a local Ray.
"""

import sys

from bonito_ray.cli import main

if __name__ == "__main__":
    sys.exit(main(["self-guide", *sys.argv[1:]]))
