"""A team's setup on one machine: PostgreSQL, an S3-compatible endpoint, the MLflow tracking server, a DVC remote."""
