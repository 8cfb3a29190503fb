"""`python -m bench`: run the benchmarks, print the table, write docs/benchmarks.md."""

from bench.runner import main

raise SystemExit(main())
