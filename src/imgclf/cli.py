"""`python -m imgclf inspect | pack | compare | predict | explain | serve | server | server-stop | remote | migrate-store |
sweep | search | deps`: a look at your images, packing a large folder into shards, the leaderboard with the MLflow runs
behind it, classifying and explaining images, serving the champion, a team's tracking server and DVC remote, moving a
local store's runs to it, a grid of DVC experiments, an Optuna search whose trials are DVC experiments, the dvc.yaml
deps contract."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import matplotlib

from imgclf import params as params_module
from imgclf import paths, team
from imgclf.errors import UserError, exit_with
from imgclf.pipeline import deps, report, stages
from imgclf.tracking import lineage, queries, registry, store
from imgclf.tracking.tags import TAG_EXP_NAME, TAG_PIPELINE

DEFAULTS = {"experiment": "image-classification", "registered_model": "imgclf"}
SERVE_PORT = 5001
PREDICT_FORMATS = ("table", "csv", "json")


def _mlflow_setting(key: str) -> str:
    """params.yaml's mlflow.<key>, or its default when there is no readable params.yaml here."""
    section = params_module.load_raw().get("mlflow")
    return str((section.get(key) if isinstance(section, dict) else None) or DEFAULTS[key])


def _image_arguments(command: argparse.ArgumentParser, model_help: str) -> None:
    """The images and the model of predict and explain."""
    command.add_argument("paths", nargs="+", metavar="PATH", help="image files, or folders searched for them")
    command.add_argument("--model", default="best", help=model_help)


def parser() -> argparse.ArgumentParser:
    """The command line."""
    main = argparse.ArgumentParser(prog="python -m imgclf", description=__doc__)
    commands = main.add_subparsers(dest="command", required=True)
    look = commands.add_parser(
        "inspect", help="look at a folder, archive or CSV of images before training: classes, sizes, duplicates, "
        "the params they suggest",
        description="Classes and counts with the imbalance ratio, image sizes (min / median / max), formats and colour "
        "modes, files that are not images, exact duplicates within and across classes, and the params the images "
        "suggest as a ready `dvc exp run -S ...` line. Reads each file once: its header, not its pixels.",
    )
    look.add_argument("path", nargs="?", help="a folder, a .zip/.tar of one, or a labels CSV (default: params.yaml's "
                      "data.path for data.source folder/csv, else data/split)")
    look.add_argument("--format", choices=("table", "json"), default="table")
    packing = commands.add_parser(
        "pack", help="pack a folder of images (or an archive of one) into a few large indexed shards, for sets too "
        "large for DVC to track file by file; data.path can point at the result",
        description="Writes OUT/pack.json and TFRecord shards of about --shard-mb each, files in path order, each "
        "shard with its index (path, size, sha256, offset). Packing again after a change rewrites only the shards "
        "holding changed, added or removed files (the others are hard-linked from the previous pack); the same files "
        "always give the same bytes. A killed pack leaves OUT as it was.",
    )
    packing.add_argument("folder", help="a folder of images (class folders or any layout), or a .zip/.tar of one")
    packing.add_argument("out", help="the pack to write or update: a new or empty folder, or an earlier pack")
    packing.add_argument("--shard-mb", type=float, default=128.0,
                         help="average shard size in MB (128; kept by later packs of the same OUT)")
    compare = commands.add_parser(
        "compare", help="print the leaderboard of metrics/*.json with the MLflow runs behind it, or of chosen runs",
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
    classify = commands.add_parser(
        "predict", help="classify image files and folders (label, probability, top-k)",
        description="Files are decoded, resized and colour-converted as the split and training do, in batches. "
        "A file that cannot be classified gets one line on stderr and the rest are still predicted "
        "(exit code 1 if any failed, 2 for bad arguments).",
    )
    model_help = (f"best (the registry's champion, default), a stage ({', '.join(stages.MODEL_STAGES)}: "
                  f"models/<stage>/), an MLflow model URI, or a model file (models/export/<stage>/int8.tflite, "
                  f"model.onnx, saved_model/) with its classifier.json beside it")
    _image_arguments(classify, model_help)
    classify.add_argument("--top-k", type=int, default=1, help="labels per image, best first (default 1)")
    classify.add_argument("--format", choices=PREDICT_FORMATS, default="table")
    classify.add_argument("--batch-size", type=int, default=32)
    why = commands.add_parser(
        "explain", help="classify images and draw where the model looked: a Grad-CAM overlay PNG per image",
        description="Each file goes through predict's decoding; its top-k classes print as JSON, and the Grad-CAM map "
        "of its top class (at the model's last convolution) is drawn over it into --out as <name>.gradcam.png. A "
        "model without convolutions (perceptron) gets the top-k only.",
    )
    _image_arguments(why, model_help)
    why.add_argument("--out", type=Path, default=Path("explained"), help="folder for the overlays (default explained/)")
    why.add_argument("--top-k", type=int, default=3)
    serve = commands.add_parser(
        "serve", help="serve models:/<mlflow.registered_model>@champion, or an exported file, over REST (mlflow models serve)",
        description="POST /invocations with {\"dataframe_split\": {\"columns\": [\"image\"], \"data\": "
        "[[\"<base64 image file>\"]]}}; answers label, probability and one column per class per row.",
    )
    serve.add_argument("--model", default="best", help="best (the registry's champion, default) or a model file: "
                       "models/export/<stage>/int8.tflite, model.onnx, saved_model/, or a .keras file, with its "
                       "classifier.json beside it")
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    serve.add_argument("--port", type=int, default=SERVE_PORT)
    serve.add_argument("--workers", type=int, default=1, help="server processes, each with its own model copy")
    team_server = commands.add_parser(
        "server", help="MLflow tracking server on PostgreSQL with proxied artifacts, for a team (foreground)",
        description="Starts PostgreSQL (a cluster in the state folder, made on first use, on 127.0.0.1) and "
        "`mlflow server` proxying artifacts to <state>/artifacts (or --artifacts s3://... / gs://...); <state>/dvc is "
        "the team's DVC store, reached over SSH. Beyond loopback only with --auth and TLS. Ctrl-C or `server-stop` "
        "stops all of it; runs, artifacts and DVC objects survive a restart.",
    )
    team_server.add_argument("--host", default=team.LOOPBACK, help="address to bind (default 127.0.0.1: this "
                             "machine only; any other needs --auth and --tls-cert/--tls-key)")
    team_server.add_argument("--port", type=int, default=team.TRACKING_PORT, help="tracking server port")
    team_server.add_argument("--pg-port", type=int, default=team.POSTGRES_PORT, help="PostgreSQL port (127.0.0.1)")
    team_server.add_argument("--artifacts", help="the team's bucket, s3://<bucket>/<path> or gs://<bucket>/<path> "
                             "(the credentials of whoever starts the server; default: <state>/artifacts on this disk)")
    team_server.add_argument("--auth", action="store_true", help="MLflow's basic-auth app: user admin, password "
                             "generated into <state>/admin.password")
    team_server.add_argument("--tls-cert", type=Path, help="PEM certificate for the server's name or address (HTTPS)")
    team_server.add_argument("--tls-key", type=Path, help="its PEM private key")
    team_server.add_argument("--workers", type=int, default=2, help="tracking server processes")
    team_server.add_argument("--state", type=Path, default=paths.TEAM_DIR, help=f"state folder (default {paths.TEAM_DIR})")
    team_stop = commands.add_parser("server-stop", help="stop the team server started by `server`")
    team_stop.add_argument("--state", type=Path, default=paths.TEAM_DIR)
    dvc_remote = commands.add_parser(
        "remote", help="make the team's DVC store (over SSH) or bucket the project's default DVC remote",
        description="The URL goes to .dvc/config (commit it); your user, port, key file or endpoint to "
        ".dvc/config.local, which DVC keeps out of git. No secret is written.")
    dvc_remote.add_argument("--name", default=team.REMOTE)
    dvc_remote.add_argument("--url", help="ssh://[user@]host[:port]/path (what `server` prints), s3://<bucket>/<path>, "
                            "gs://<bucket>/<path> or a folder (default: the team server's store, from --state)")
    dvc_remote.add_argument("--keyfile", help="your SSH private key for an ssh:// remote (default: ssh-agent, ~/.ssh)")
    dvc_remote.add_argument("--endpoint", help="an S3-compatible endpoint URL for an s3:// remote")
    dvc_remote.add_argument("--state", type=Path, default=paths.TEAM_DIR)
    move = commands.add_parser("migrate-store", help="copy the local store's runs to a tracking server "
                               "(idempotent)", description="Params, metrics with their steps, tags, times, status, artifacts and logged "
                               "models; a run already copied (tag imgclf.migrated_from) is skipped.")
    move.add_argument("--to", required=True, dest="target", help="target tracking URI (http://127.0.0.1:5002)")
    move.add_argument("--from", dest="source", help="source store (default: the project's sqlite:///…/mlflow.db)")
    grid = commands.add_parser(
        "sweep", help="run the grid of -S overrides as DVC experiments (dvc queue -j N, or a Ray cluster)",
        description="Every combination of the overrides (key=v1,v2 sweeps a key, as `dvc exp run -S` does) is "
        "checked against params.yaml's schema, queued with `dvc exp run --queue -n <name>-<n>` and run by "
        "`dvc queue start -j N` on this host; with --ray, each is a Ray task that clones the git remote at HEAD "
        "on its node, runs `dvc exp run --pull` against the shared MLflow server and `dvc exp push`es it "
        "back, then this host pulls it. One line per finished experiment (its best model stage's "
        "accuracy, its seconds), then a table; exit code 1 if any failed (the others still run).")
    grid.add_argument("-S", "--set-param", dest="overrides", action="append", default=[], metavar="KEY=V1,V2",
                      help="a params.yaml override or sweep (repeatable)")
    grid.add_argument("--name", default="sweep", help="experiment name prefix (default sweep: sweep-1, sweep-2, ...)")
    _run_arguments(grid)
    study = commands.add_parser(
        "search", help="search the -S space with Optuna (TPE, median pruning); every trial a DVC experiment",
        description="Optuna's TPE sampler picks each trial's values from the space (-S key=uniform(a,b) | "
        "loguniform(a,b) | int(a,b) | choice(v1,v2,...) | value); each trial runs as `dvc exp run -n <name>-<trial> "
        "-S ... <stage>` on this host's DVC queue (--jobs) or a Ray cluster (--ray), its --objective is read from "
        "the experiment's metrics and told back. The objective's stage reports its validation metric each epoch and "
        "stops when the median pruner says so. The study persists (--storage): the same command again resumes it. "
        "A table best first, the best trial's `dvc exp apply` line, reports/search/<name>/ (trials, "
        "optimization history, parameter importances) and an MLflow run with each trial's pipeline run beneath.")
    study.add_argument("-S", "--set-param", dest="overrides", action="append", default=[], metavar="KEY=DIST",
                       help="a dimension of the space, or a fixed value (repeatable)")
    study.add_argument("--objective", required=True, help="<stage>.<metric> of metrics/<stage>.json (baseline.accuracy)")
    study.add_argument("--direction", default="auto",
                       help="maximize | minimize | auto (minimize loss and sizes, maximize the rest; default)")
    study.add_argument("--trials", type=int, default=20, help="trials the study runs in all, resumes included (20)")
    study.add_argument("--name", default="search", help="the study's name and experiment prefix (search: search-0, ...)")
    study.add_argument("--storage", help="the study's RDB URL (default: sqlite:///<project>/search.db; or "
                       "$IMGCLF_SEARCH_STORAGE, e.g. the team's postgresql+psycopg://...)")
    study.add_argument("--seed", type=int, help="the sampler's seed (default: params.yaml's seed)")
    study.add_argument("--startup-trials", type=int, default=4, help="random trials before TPE models the space (4)")
    study.add_argument("--pruner", default="median", help="median (Optuna's MedianPruner) | none")
    study.add_argument("--prune-after", type=int, default=2,
                       help="complete trials the median pruner waits for before it prunes (2)")
    study.add_argument("--enqueue", action="append", default=[], metavar="'KEY=V KEY=V'",
                       help="a trial with these values, run before the sampler's (repeatable; e.g. today's params)")
    _run_arguments(study)
    code_deps = commands.add_parser(
        "deps", help="print each stage's code deps from its imports; exit 1 if dvc.yaml differs",
        description=deps.__doc__,
    )
    code_deps.add_argument("--write", action="store_true", help="rewrite the deps lists in dvc.yaml")
    code_deps.add_argument("--root", type=Path, default=Path("."), help="project root (default: .)")
    return main


def _run_arguments(command: argparse.ArgumentParser) -> None:
    """Where sweep's and search's experiments run: this host's DVC queue, or a Ray cluster."""
    command.add_argument("--jobs", "-j", type=int, default=1, help="experiments at a time (DVC queue workers)")
    command.add_argument("--ray", metavar="ADDRESS", help="run on the Ray cluster at ADDRESS (host:port of its head)")
    command.add_argument("--num-cpus", type=float, default=1.0, help="with --ray: CPUs each experiment reserves (1)")
    command.add_argument("--num-gpus", type=float, default=0.0, help="with --ray: GPUs each experiment reserves (0)")
    command.add_argument("--max-retries", type=int, default=2,
                         help="with --ray: times Ray reruns an experiment whose node or worker died (2)")


def compare(args: argparse.Namespace) -> str:
    """The leaderboard text for the chosen runs (by default: metrics/*.json and the runs behind dvc.lock)."""
    uri = store.tracking_uri()
    where = store.display_uri(uri)
    experiment = args.experiment or _mlflow_setting("experiment")
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


def serve(args: argparse.Namespace) -> None:
    """Exec `mlflow models serve` of the champion (checked to exist first) or of a model file, in this environment."""
    bin_dir = str(Path(sys.executable).parent)
    if args.model == "best":
        uri = store.tracking_uri()
        name = _mlflow_setting("registered_model")
        version = registry.champion(store.client(uri), name, store.display_uri(uri))
        model_uri, described = registry.champion_uri(name), f"version {version.version} ({version.tags.get('stage', '?')})"
        os.environ["MLFLOW_TRACKING_URI"] = uri  # the store the champion is in
    else:
        model_uri, described = _served_file(Path(args.model)), args.model
    print(f"serve: {model_uri if args.model == 'best' else args.model} = {described} "
          f"on http://{args.host}:{args.port}/invocations", file=sys.stderr, flush=True)
    # The server runs `uvicorn` by name: this environment's, even when its bin is not on PATH.
    os.environ["PATH"] = os.pathsep.join([bin_dir, os.environ.get("PATH", "")])
    command = [os.path.join(bin_dir, "mlflow"), "models", "serve", "-m", model_uri,
               "--env-manager", "local", "--host", args.host, "--port", str(args.port), "--workers", str(args.workers)]
    os.execv(command[0], command)


def _served_file(path: Path) -> str:
    """An MLflow model folder serving a model file (an export, or a .keras file) with the classifier.json beside it,
    made once per file content in the temp folder; the file is loaded here first, so a bad one stops with one line."""
    import hashlib
    import tempfile
    from importlib.metadata import version

    from imgclf import atomic
    from imgclf.inference import predict, runtimes, serving

    if not runtimes.is_model_file(path):
        raise UserError(f"--model {path}: give best or a model file ({', '.join(runtimes.SUFFIXES)}, a SavedModel folder)")
    predict.exported(path)  # loads: not found, not a model, no classifier.json -> one line, before any server starts
    digest = hashlib.sha256()
    for part in sorted(path.rglob("*")) if path.is_dir() else [path]:
        if part.is_file():
            digest.update(part.relative_to(path).as_posix().encode() if path.is_dir() else b"")
            digest.update(part.read_bytes())
    digest.update((path.parent / "classifier.json").read_bytes())
    target = Path(tempfile.gettempdir()) / f"imgclf-serve-{digest.hexdigest()[:20]}"
    if not (target / "MLmodel").is_file():
        requirements = [f"{name}=={version(name)}" for name in ("mlflow", "numpy", "pandas", "pillow", "imgclf")]
        with atomic.directory(target) as folder:
            serving.save_local(path, path.parent / "classifier.json", folder, requirements)
    return str(target)


def predict_command(args: argparse.Namespace) -> int:
    """predict: imported here, so that other commands do not pay for importing TensorFlow."""
    from imgclf.inference import predict

    return predict.main(args.paths, args.model, args.top_k, args.format, args.batch_size,
                        _mlflow_setting("registered_model"))


def inspect_command(args: argparse.Namespace) -> int:
    """inspect: the findings on stdout."""
    from imgclf.data import inspection

    data = params_module.load_raw().get("data")
    data = data if isinstance(data, dict) else {}
    label_columns = tuple(data.get("label_columns") or ("label",))
    if args.path:
        source = "csv" if args.path.lower().endswith(".csv") else "folder"
        target = args.path
    else:
        source, target = inspection.default_target(str(data.get("source", "")), str(data.get("path", "images")))
    findings = inspection.inspect(source, target, label_columns if source == "csv" else ("label",))
    sys.stdout.write(inspection.render(findings, args.format))
    return 0


def pack_command(args: argparse.Namespace) -> int:
    """pack: FOLDER's files into OUT's shards; a one-line summary, and the files that could not be read."""
    from imgclf.data import shards, snapshot

    folder, out = Path(args.folder).resolve(), Path(args.out).resolve()
    if not 0 < args.shard_mb <= 65536:
        raise UserError(f"--shard-mb = {args.shard_mb}: give a size in MB above 0, at most 65536")
    if out == folder or out.is_relative_to(folder) or folder.is_relative_to(out):
        raise UserError(f"pack {args.folder} {args.out}: OUT must be outside FOLDER (and FOLDER outside OUT)")
    members, _ = snapshot.members("folder", args.folder)
    done = shards.pack(members, out, args.shard_mb,
                       progress=lambda count: print(f"pack: {count:,} of {len(members):,} files", flush=True))
    print(f"pack: {done.files:,} files, {done.bytes / 1e6:,.1f} MB in {done.shards} shards at {args.out}; "
          f"{done.written} shard(s) written ({done.written_bytes / 1e6:,.1f} MB), "
          f"{done.shards - done.written} unchanged; {len(done.skipped)} file(s) skipped", flush=True)
    for name, reason in done.skipped:
        print(f"  skipped {name}: {reason}")
    return 0


def explain_command(args: argparse.Namespace) -> int:
    """explain: imported here, so that other commands do not pay for importing TensorFlow."""
    from imgclf.inference import predict

    return predict.explain(args.paths, args.model, args.out, args.top_k, _mlflow_setting("registered_model"))


def _ray_settings(args: argparse.Namespace):
    """The Ray cluster of sweep/search --ray (None: this host's DVC queue, --jobs at a time)."""
    from imgclf.sweep import cluster

    if args.jobs < 1:
        raise UserError(f"{args.command} --jobs {args.jobs}: use 1 or more")
    if not args.ray:
        return None
    if args.jobs != 1:
        raise UserError(f"{args.command}: --jobs is for this host's DVC queue; with --ray the cluster's free "
                        "resources (--num-cpus/--num-gpus per experiment) set how many run at once")
    if args.num_cpus < 0 or args.num_gpus < 0 or args.max_retries < 0:
        raise UserError(f"{args.command} --num-cpus/--num-gpus/--max-retries: use 0 or more")
    return cluster.RaySettings(args.ray, args.num_cpus, args.num_gpus, args.max_retries)


def sweep_command(args: argparse.Namespace) -> int:
    """sweep: the grid on this host's DVC queue, or on a Ray cluster."""
    from imgclf.sweep import driver

    return driver.sweep(args.overrides, args.name, args.jobs, _ray_settings(args))


def search_command(args: argparse.Namespace) -> int:
    """search: an Optuna study whose trials are DVC experiments."""
    from imgclf.sweep import search

    return search.search(search.Settings(
        overrides=tuple(args.overrides), objective=args.objective, direction=args.direction, trials=args.trials,
        jobs=args.jobs, name=args.name, storage=args.storage, seed=args.seed, startup_trials=args.startup_trials,
        pruner=args.pruner, prune_after=args.prune_after, enqueue=tuple(args.enqueue), ray=_ray_settings(args)))


def compare_command(args: argparse.Namespace) -> int:
    """compare: the leaderboard on stdout."""
    sys.stdout.write(compare(args))
    return 0


def serve_command(args: argparse.Namespace) -> int:
    """serve: replaces this process with `mlflow models serve` (returns only on an error)."""
    serve(args)
    return 1


def team_command(args: argparse.Namespace) -> int:
    """server, server-stop, remote, migrate-store: imported here, so other commands skip MLflow's server and DVC."""
    from imgclf.team import remote, server
    from imgclf.tracking import migrate

    if args.command == "server":
        server.serve(server.Settings(
            state=args.state.resolve(), host=args.host, port=args.port, pg_port=args.pg_port, artifacts=args.artifacts,
            auth=args.auth, tls_cert=args.tls_cert, tls_key=args.tls_key, workers=args.workers))
    elif args.command == "server-stop":
        stopped = server.stop(args.state.resolve())
        print("server-stop: " + ("stopped" if stopped else "nothing was running"), file=sys.stderr)
    elif args.command == "remote":
        print(remote.configure(Path("."), args.state.resolve(), args.name, args.url, args.endpoint, args.keyfile))
    else:
        source = args.source or f"sqlite:///{paths.main_workspace() / paths.STORE_FILE}"
        summary = migrate.migrate(source, args.target)
        print(summary.line(store.display_uri(source), store.display_uri(args.target)))
    return 0


def deps_command(args: argparse.Namespace) -> int:
    """deps: print (or --write) each stage's code deps; 1 when dvc.yaml differs."""
    return deps.main(args.root.resolve(), args.write)


# Every subcommand the parser defines, and the function that runs it: nothing falls through.
COMMANDS = {
    "inspect": inspect_command, "pack": pack_command, "compare": compare_command, "predict": predict_command, "explain": explain_command,
    "serve": serve_command, "server": team_command, "server-stop": team_command, "remote": team_command,
    "migrate-store": team_command, "sweep": sweep_command, "search": search_command, "deps": deps_command,
}


def main(argv: list[str] | None = None) -> None:
    """Entry point of `python -m imgclf`: parse, then run the command's function; its result is the exit code."""
    args = parser().parse_args(argv)
    matplotlib.use("Agg")  # plots go to files: no display
    store.configure_client()
    try:
        raise SystemExit(COMMANDS[args.command](args))
    except UserError as error:
        exit_with(error)
