"""``python -m benchmarks.cli`` = ``musiclm-eval``."""

from benchmarks.cli import main

main()
