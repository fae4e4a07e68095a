"""MLflow tracking: the store (store.py), run tags (tags.py), a stage's run (runs.py), run queries (queries.py)."""
