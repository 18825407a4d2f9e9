import sys

from bnbench.cli import main

sys.exit(main())
