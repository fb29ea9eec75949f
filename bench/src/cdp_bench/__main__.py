"""`python -m cdp_bench ingest|latency [--json] [--events N] [--concurrency C] [--rate R] [--seconds S]`.

main(argv) and render(result) live in cdp_bench.cli (re-exported here and by the package).
"""

import sys

from .cli import main, render

__all__ = ["main", "render"]

if __name__ == "__main__":
    sys.exit(main())
