"""One module per DVC stage, run as `python -m stages.<stage>` from the project root."""
