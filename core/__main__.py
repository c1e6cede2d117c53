"""`python -m core COMMAND ...`: the command line of the hub (`core.cli.main`; `--help` lists the commands)."""
import sys

from core.cli.main import main

sys.exit(main())
