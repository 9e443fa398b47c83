"""Entrypoint for `ray job submit`: the same job as `bonito-ray export`, with the same flags.

    ray job submit --working-dir . -- python jobs/export.py --help

Export needs no cluster: it reads and writes files (local or URI) from wherever it runs.
"""

import sys

from bonito_ray.cli import main

if __name__ == "__main__":
    sys.exit(main(["export", *sys.argv[1:]]))
