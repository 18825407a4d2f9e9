"""bnbench: one batch-normalised network in every framework, checked against a NumPy reference,
then timed.

Layers go one way, each a package (tests/test_layers.py holds them to it):

1. ``reference`` (the spec, the reference model, data) and ``adapters`` (the contract and one
   adapter per framework), laid out at the top of the checkout;
2. ``equivalence``: agreement with the reference;
3. ``timing``: workers, participants, bursts, rounds, statistics, peak, FLOPs, workloads, machine;
4. the tools: ``comparisons`` (compare, tuning logs, sweeps), ``verification``, ``tuning``,
   ``lecture``, ``publishing``, ``catalogue``; the command line, ``cli``, stays thin.

Importing the suite imports no framework."""
