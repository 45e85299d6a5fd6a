"""`python -m p2p.cli ...`: the same as the installed `pouw` command."""

import sys

from p2p.cli.main import main

sys.exit(main())
