import sys

from rlblocks.cli import main

sys.exit(main())
