"""Agreement with the reference: the one table of tolerances per dtype and the failure messages that
say where (``tolerances``), running an adapter and the reference side by side on the same batches
(``trace``), and the conventions a framework's own batch-norm layer and momentum optimizer follow
with their defaults, solved from their outputs (``conventions``).

Above the spec, the reference and the adapters; below every tool. Starts no process."""
