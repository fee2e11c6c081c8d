"""``python -m thinkling.distill <command>``: the commands are in ``distill.cli``."""

from __future__ import annotations

import sys

from thinkling.distill.cli import main

if __name__ == "__main__":
    sys.exit(main())
