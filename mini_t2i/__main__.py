"""`python -m mini_t2i` is the `mini-t2i` command."""

import sys

from mini_t2i.cli import main

sys.exit(main())
