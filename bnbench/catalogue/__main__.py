"""``python -m bnbench.catalogue`` (``make generate``): write every file derived from the declarations."""
import sys

from bnbench.catalogue.generate import main

sys.exit(main())
