"""`python -m voronka.cli`: the `voronka` command."""

import sys

from voronka.cli import main

sys.exit(main())
