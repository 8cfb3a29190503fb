"""`python -m mogplex_mcp` runs the command line."""

from mogplex_mcp.cli import main

raise SystemExit(main())
