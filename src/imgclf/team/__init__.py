"""A team's setup: PostgreSQL, the MLflow tracking server with proxied artifacts, a DVC remote others reach.

The defaults live here, so that the command line shows them without importing MLflow or DVC.
"""

LOOPBACK = "127.0.0.1"
TRACKING_PORT = 5002
POSTGRES_PORT = 5433
REMOTE = "team"  # the DVC remote's name
