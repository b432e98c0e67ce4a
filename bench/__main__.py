"""``make bench`` (scripts/bench.sh, which starts a throwaway PostgreSQL) or ``python -m bench``.

Runs the history-scaling benchmark (bench/history_scaling.py) on SQLite and PostgreSQL and
writes its table to bench/results/latest.md. ``python -m bench --help`` lists the options.
"""
import sys

from bench.history_scaling import main

sys.exit(main())
