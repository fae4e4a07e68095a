"""The pipeline: the stage list, the stage skeleton, publishing, evaluation, plots, the report, dvc.yaml deps."""
