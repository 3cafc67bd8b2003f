"""`python -m shared ...`: the monitor's command line."""

from shared.cli import main

raise SystemExit(main())
