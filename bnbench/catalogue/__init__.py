"""Everything derived from the frameworks' declarations, generated between markers by
``make generate`` (``python -m bnbench.catalogue``): asv.conf.json, the Makefile's environments,
pyproject's extras, and the framework lists and tables of the documents (``generate``)."""
