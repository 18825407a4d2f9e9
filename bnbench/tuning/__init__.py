"""``bnbench tune``: hyperparameter search as the course teaches it. The search space on its
scales (``space``), training one trial, panda or caviar (``trial``), a study's settings
(``settings``), its storage and sampler (``storage``), the workers' slot protocol (``slots``), the
run loops (``study``) and the summary with its plots (``summary``).

Random values, never a grid; the learning rate and 1 - beta on a log scale; coarse to fine;
selection on the validation split, the test split used once at the end; many workers, on any
machine, on one Optuna study."""
