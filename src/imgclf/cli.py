"""`python -m imgclf compare | deps`: the leaderboard straight from MLflow; the dvc.yaml deps contract."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml

from imgclf import lineage, report, stage_deps
from imgclf.errors import UserError, exit_with
from imgclf.tracking import queries, store
from imgclf.tracking.tags import TAG_EXP_NAME, TAG_PIPELINE

DEFAULT_EXPERIMENT = "image-classification"


def _default_experiment() -> str:
    try:
        raw = yaml.safe_load(Path("params.yaml").read_text()) or {}
        return str(raw.get("mlflow", {}).get("experiment") or DEFAULT_EXPERIMENT)
    except (OSError, yaml.YAMLError, AttributeError):
        return DEFAULT_EXPERIMENT


def parser() -> argparse.ArgumentParser:
    """The command line."""
    main = argparse.ArgumentParser(prog="python -m imgclf", description=__doc__)
    commands = main.add_subparsers(dest="command", required=True)
    compare = commands.add_parser(
        "compare", help="print the leaderboard from MLflow runs",
        description="Pick runs by pipeline id, DVC experiment name, or (default) the runs that "
        "produced the outputs recorded in dvc.lock — stages restored from DVC's run-cache included.",
    )
    compare.add_argument("--experiment", default=None, help="MLflow experiment (default: params.yaml mlflow.experiment)")
    which = compare.add_mutually_exclusive_group()
    which.add_argument("--pipeline-id", help="runs of one dvc repro / DVC experiment (tag imgclf.pipeline_id)")
    which.add_argument("--exp-name", help="runs of a DVC experiment (tag dvc.exp_name)")
    which.add_argument("--lock", type=Path, help="runs matching this dvc.lock (default: ./dvc.lock)")
    compare.add_argument("--format", choices=("markdown", "csv"), default="markdown")
    compare.add_argument("--sort-by", choices=sorted(report.SORT_ASCENDING), default="accuracy")
    compare.add_argument("--with-ids", action="store_true", help="add pipeline and run ids")
    deps = commands.add_parser(
        "deps", help="print each stage's code deps from its imports; exit 1 if dvc.yaml differs",
        description=stage_deps.__doc__,
    )
    deps.add_argument("--write", action="store_true", help="rewrite the deps lists in dvc.yaml")
    deps.add_argument("--root", type=Path, default=Path("."), help="project root (default: .)")
    return main


def compare(args: argparse.Namespace) -> str:
    """The leaderboard text for the chosen runs."""
    uri = store.tracking_uri()
    client = store.client(uri)
    experiment = args.experiment or _default_experiment()
    if args.pipeline_id:
        runs = queries.latest_by_stage(client, experiment, {TAG_PIPELINE: args.pipeline_id})
        chosen = f"pipeline {args.pipeline_id}"
    elif args.exp_name:
        runs = queries.latest_by_stage(client, experiment, {TAG_EXP_NAME: args.exp_name})
        chosen = f"DVC experiment {args.exp_name}"
    else:
        lock = args.lock or Path(lineage.LOCK_FILE)
        if not lock.exists():
            raise UserError(f"{lock} not found: run `make repro` first, or pass --pipeline-id/--exp-name")
        runs = queries.runs_from_lock(client, experiment, lock)
        chosen = f"the runs that produced {lock}"
    frame = report.leaderboard(runs, args.sort_by)
    if frame.empty:
        raise UserError(f"no finished model-stage runs for {chosen} in MLflow experiment {experiment!r} at {uri}: check the filter")
    return report.render(frame, args.format, with_ids=args.with_ids)


def main(argv: list[str] | None = None) -> None:
    """Entry point of `python -m imgclf`."""
    args = parser().parse_args(argv)
    if args.command == "deps":
        raise SystemExit(stage_deps.main(args.root.resolve(), args.write))
    try:
        sys.stdout.write(compare(args))
    except UserError as error:
        exit_with(error)
