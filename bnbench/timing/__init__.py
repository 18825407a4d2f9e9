"""How a framework is timed, and where: worker processes in its own environment (``worker``,
``frameworks``), the one path that builds, verifies, warms and times a participant
(``participant``), the steps and bursts run where the framework lives (``steps``), paired rounds
(``rounds``), their layout (``schedule``: the baseline beside every burst, the cores), what they
publish (``summary``: the rounds the machine ran undisturbed) and their statistics (``stats``),
the matmul peak (``peak``), analytic FLOPs (``flops``), the timed workloads (``workload``) and the
machine's identity, its hardware (``machine``).

Every timing tool (``bnbench compare``, the tuning logs, the sweeps, the asv benchmarks) times
through this package; nothing here imports a tool."""
