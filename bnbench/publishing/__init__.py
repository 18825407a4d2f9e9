"""What the suite publishes: ``bnbench report``'s tables, CSV files and plots (``report`` and
its sections), and the one ``save`` every figure goes through (``figures``)."""
