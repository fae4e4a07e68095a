"""`python -m imgclf sweep`: a grid of params overrides run as DVC experiments.

grid: the cartesian product of `-S key=v1,v2` (DVC's own Hydra sweep syntax), each point validated
against params.yaml's schema before anything runs. local: the points queued with `dvc exp run
--queue` and run by `dvc queue start -j N` on this host. outcome: what each experiment gave (its
DVC metrics, its MLflow pipeline run's seconds), one line each and a final table.
"""
