"""A team's setup on one machine: PostgreSQL, an S3-compatible endpoint, the MLflow tracking server, a DVC remote.

The defaults live here, so that the command line shows them without importing boto3 or DVC.
"""

LOOPBACK = "127.0.0.1"
TRACKING_PORT = 5002
POSTGRES_PORT = 5433
S3_PORT = 5003
BUCKET = "imgclf"
REMOTE = "team"  # the DVC remote's name
