"""Run the speed benchmark as a script: `python benchmarks/bench.py [--model NAME] [--json]`.

Same flags as `mnistlite bench`.
"""

import sys

from mnistlite.cli import main

sys.exit(main(["bench", *sys.argv[1:]]))
