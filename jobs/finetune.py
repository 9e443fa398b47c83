"""Entrypoint for `ray job submit`: the same job as `bonito-ray finetune`, with the same flags.

    ray job submit --working-dir . -- python jobs/finetune.py --help

Inside a submitted job it joins that cluster; run directly, it starts a local Ray.
"""

import sys

from bonito_ray.cli import main

if __name__ == "__main__":
    sys.exit(main(["finetune", *sys.argv[1:]]))
