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
        description="By default the leaderboard of metrics/*.json (what DVC tracks), with the runs that "
        "produced them (through dvc.lock, stages restored from DVC's run-cache included); or the runs of "
        "one pipeline id or DVC experiment, from their MLflow metrics.",
    )
    compare.add_argument("--experiment", default=None, help="MLflow experiment (default: params.yaml mlflow.experiment)")
    which = compare.add_mutually_exclusive_group()
    which.add_argument("--pipeline-id", help="runs of one dvc repro / DVC experiment (tag imgclf.pipeline_id)")
    which.add_argument("--exp-name", help="runs of a DVC experiment (tag dvc.exp_name)")
    which.add_argument("--lock", type=Path, help="runs matching this dvc.lock, with their own metrics "
                       "(default: metrics/*.json here and the runs behind ./dvc.lock)")
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
    """The leaderboard text for the chosen runs (by default: metrics/*.json and the runs behind dvc.lock)."""
    uri = store.tracking_uri()
    where = store.display_uri(uri)
    experiment = args.experiment or _default_experiment()
    if args.pipeline_id or args.exp_name or args.lock:
        client = store.client(uri)
        if args.pipeline_id:
            runs = queries.latest_by_stage(client, experiment, {TAG_PIPELINE: args.pipeline_id})
            chosen = f"pipeline {args.pipeline_id}"
        elif args.exp_name:
            runs = queries.latest_by_stage(client, experiment, {TAG_EXP_NAME: args.exp_name})
            chosen = f"DVC experiment {args.exp_name}"
        else:
            runs = queries.runs_from_lock(client, experiment, args.lock)
            chosen = f"the runs that produced {args.lock}"
        frame = report.leaderboard(report.rows_from_runs(runs), args.sort_by)
        if frame.empty:
            raise UserError(f"no finished model-stage runs for {chosen} in MLflow experiment {experiment!r} at {where}: "
                            f"check the filter")
        linked, _ = report.with_runs(frame, runs, queries.run_link(uri))
        return report.render(linked, args.format, with_ids=args.with_ids)
    frame = report.leaderboard(report.rows_from_files(), args.sort_by)
    if frame.empty:
        raise UserError("metrics/*.json: no model stage's metrics here: run `make repro` first, or pass --pipeline-id/--exp-name")
    try:
        runs = queries.runs_from_lock(store.client(uri), experiment, Path(lineage.LOCK_FILE))
    except UserError as error:  # the table stands without the store: say why it has no run ids
        print(f"imgclf: {error}", file=sys.stderr)
        runs = {}
    linked, missing = report.with_runs(frame, runs, queries.run_link(uri))
    if missing and args.with_ids:
        print(report.missing_line(missing, where), file=sys.stderr)
    return report.render(linked, args.format, with_ids=args.with_ids)


def main(argv: list[str] | None = None) -> None:
    """Entry point of `python -m imgclf`."""
    args = parser().parse_args(argv)
    if args.command == "deps":
        raise SystemExit(stage_deps.main(args.root.resolve(), args.write))
    try:
        sys.stdout.write(compare(args))
    except UserError as error:
        exit_with(error)
