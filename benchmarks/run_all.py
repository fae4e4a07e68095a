"""Run every benchmark (each in its own process), then write benchmarks/results/summary.md.

    python benchmarks/run_all.py                       # all but chapter (`make bench`)
    python benchmarks/run_all.py --only chapter        # the chapter workload (`make bench-chapter`)
    python benchmarks/run_all.py --only resume         # a killed finetune resumed (`make bench-resume`)
    python benchmarks/run_all.py --only search         # TPE against a grid of the same budget (`make bench-search`)
    python benchmarks/run_all.py --only pack           # a million-file folder packed and tracked (`make bench-pack`)
    python benchmarks/run_all.py --only storage        # the pipeline on that pack, data.storage shards (`make bench-storage`)
    python benchmarks/run_all.py --only input_pipeline,backbone
    python benchmarks/run_all.py --summary-only        # rebuild the table from results/*.json
    python benchmarks/run_all.py --wait-quiet 600      # before each one, wait (up to 600 s) for a
                                                       # 1-minute load average below 0.7

Each benchmark writes benchmarks/results/<name>.json with the machine (CPU, cores, versions) and
the load average before and after it ran: figures taken under load are not comparable.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
sys.path.insert(0, str(HERE))
from machine import machine_info  # noqa: E402

# name -> command line (relative to benchmarks/); run in this order (cheapest TF work first).
BENCHMARKS: dict[str, list[str]] = {
    "input_pipeline": ["input_pipeline.py"],
    "backbone": ["backbone.py"],
    "scale": ["scale.py"],
    "own_images": ["own_images.py"],
    "inference": ["inference.py"],
    "dvc_status": ["dvc_status.py", "--repeats", "1"],  # benchmarks/dvc_status.py, another owner's
    "team_restart": ["team_restart.py"],
    "end_to_end": ["end_to_end.py"],
    "dvc_overhead": ["dvc_overhead.py", "--repeats", "3"],
    # Not in the default set (`make bench-chapter`): two whole dvc repro of the chapter workload, ~30 min.
    "chapter": ["chapter.py"],
    # Nor this (`make bench-resume`): the chapter workload's finetune run, killed and resumed, ~12 min.
    "resume": ["resume.py"],
    # Nor this (`make bench-export`): a fresh clone's dvc repro with every model stage exported, ~15 min.
    "export": ["export.py"],
    # Nor this (`make bench-search`): TPE against a grid of the same budget on the offline default, ~30 min.
    "search": ["search.py"],
    # Nor this (`make bench-pack`): a 1,000,000-file folder generated, packed, and tracked by DVC, ~25 min.
    "pack": ["pack.py", "--raw-folder"],
    # Nor this (`make bench-storage`): data.storage shards on pack.py's packed folders, and input throughput.
    "storage": ["storage.py"],
}
DEFAULT = [name for name in BENCHMARKS if name not in ("chapter", "resume", "export", "search", "pack", "storage")]
QUIET_LOAD = 0.7


def wait_quiet(limit_s: float) -> float:
    """Wait until the 1-minute load average is below QUIET_LOAD, at most limit_s; return it."""
    deadline = time.monotonic() + limit_s
    while os.getloadavg()[0] >= QUIET_LOAD and time.monotonic() < deadline:
        time.sleep(10)
    return os.getloadavg()[0]


def run(name: str, quiet_s: float, extra: tuple[str, ...] = ()) -> dict:
    if quiet_s > 0:
        load = wait_quiet(quiet_s)
        print(f"[{name}] load average {load:.2f}", flush=True)
    command = [sys.executable, str(HERE / BENCHMARKS[name][0]), *BENCHMARKS[name][1:], *extra]
    print(f"[{name}] {' '.join(command[1:])}", flush=True)
    started = time.perf_counter()
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    result = subprocess.run(command, env=env)
    seconds = time.perf_counter() - started
    print(f"[{name}] exit {result.returncode} after {seconds:.0f} s", flush=True)
    return {"exit": result.returncode, "seconds": round(seconds, 1)}


# --- the summary table ----------------------------------------------------------------------


def _load(name: str) -> dict | None:
    path = RESULTS / f"{name}.json"
    return json.loads(path.read_text()) if path.is_file() else None


def _mark(ok: bool | None, at_limit: bool = False) -> str:
    """pass / MISS; "at the limit" for a missed goal whose ceiling, measured in the same run, is the machine's."""
    if ok is None:
        return ""
    return "pass" if ok else ("at the limit" if at_limit else "MISS")


def _loads(data: dict) -> str:
    machine = data.get("machine", {})
    before = machine.get("load_average_1_5_15", ["?"])[0]
    after = machine.get("load_average_after", ["?"])[0]
    return f"{before} / {after}"


def summary_rows() -> list[tuple[str, str, str, str, str]]:
    """(benchmark, figure, value, target, status) rows from the results on disk."""
    rows: list[tuple[str, str, str, str, str]] = []
    data = _load("input_pipeline")
    if data:
        rows.append(("input_pipeline", "load average (1 min) before / after", _loads(data), "< 0.7", ""))
        feeds = ("a_pipeline", "b_idg", "c_memory")
        for mode, row in data["photos"]["rows"].items():
            label = f"photos 150px, aug {mode}"
            median = " / ".join(f"{row[key]['median_batch_images_per_s']:.0f}" for key in feeds)
            epochs = " / ".join(f"{row[key]['images_per_s']:.0f}" for key in feeds)
            rows.append(("input_pipeline", f"{label}: (a) pipeline / (b) IDG / (c) memory",
                         f"{epochs} img/s (median batch: {median})", "", ""))
            targets = row["targets"]
            # (a) cannot beat (b) by more than (c), the compute-bound limit, does: a/b is "at the limit" when
            # a reaches its a/c target, i.e. a/b >= that share of the ceiling c/b.
            at_ceiling = row["a_over_c"] >= targets["a_over_c_min"]
            for ratio, name in (("a_over_c", "a/c"), ("a_over_b", "a/b")):
                ceiling = f"; ceiling c/b {row['c_over_b']:.2f}" if ratio == "a_over_b" and "c_over_b" in row else ""
                target = f">= {targets[ratio + '_min']}"
                if ratio == "a_over_b":
                    target += f" (or >= {targets['a_over_c_min']} x ceiling c/b)"
                rows.append(("input_pipeline", f"{label}: {name}",
                             f"{row[ratio]:.2f} (median batch: {row.get(ratio + '_median', float('nan')):.2f}{ceiling})",
                             target, _mark(row[ratio] >= targets[ratio + "_min"], ratio == "a_over_b" and at_ceiling)))
        if "mnist" in data:
            row = data["mnist"]["row"]
            median = " / ".join(f"{row[key]['median_batch_images_per_s']:.0f}" for key in feeds)
            epochs = " / ".join(f"{row[key]['images_per_s']:.0f}" for key in feeds)
            rows.append(("input_pipeline", f"mnist 28px chapter CNN ({data['mnist'].get('precision', '')}): (a) / (b) / (c)",
                         f"{epochs} img/s (median batch: {median})", "", ""))
            rows.append(("input_pipeline", "mnist: spread max/min - 1",
                         f"{row['spread'] * 100:.1f} % (median batch: {row.get('spread_median', float('nan')) * 100:.1f} %)",
                         "<= ~10 %", _mark(row["spread"] <= 0.10)))
    data = _load("backbone")
    if data:
        rows.append(("backbone", "load average (1 min) before / after", _loads(data), "< 0.7", ""))
        matmul = data["matmul_gflops_per_s"]
        rows.append(("backbone", "matmul 4096^2 float32 / bfloat16",
                     f"{matmul['float32']:.0f} / {matmul['bfloat16']:.0f} GFLOP/s", "", ""))
        for row in data["speed"]:
            label = f"vgg16 {row['side']}px {row['precision']}"
            bare, project = row["bare_forward"], row["extraction"]
            rows.append(("backbone", f"{label}: bare forward", f"{bare['images_per_s']:.0f} img/s, "
                         f"{bare['gflops_per_s']:.0f} GFLOP/s", "", ""))
            rows.append(("backbone", f"{label}: bottleneck extraction (median batch)",
                         f"{project['median_batch_images_per_s']:.0f} img/s, "
                         f"{project['median_batch_gflops_per_s']:.0f} GFLOP/s = {row['extraction_over_bare']:.2f} x bare "
                         f"(whole pass {project['images_per_s']:.0f} img/s)", ">= 0.90 x bare",
                         _mark(row["pass_within_10pct"])))
            if "pass_bf16_1500_gflops" in row:  # at the limit: the stage runs at the bare forward pass's speed
                rows.append(("backbone", f"{label}: extraction GFLOP/s",
                             f"{project['median_batch_gflops_per_s']:.0f} (limits in this run: bare forward "
                             f"{bare['gflops_per_s']:.0f}, bf16 matmul {matmul['bfloat16']:.0f})",
                             ">= 1500 (or >= 0.90 x bare forward)",
                             _mark(row["pass_bf16_1500_gflops"], row["pass_within_10pct"])))
        top = data["top_on_features"]
        if "mean_difference_points" in top:
            seeds = ", ".join(str(seed) for seed in top["seeds"])
            for precision in ("float32", "mixed_bfloat16"):
                accuracies = " / ".join(f"{value:.3f}" for value in top[precision]["accuracy_by_seed"].values())
                rows.append(("backbone", f"top accuracy on {precision} features (mnist-sample 32px), seeds {seeds}",
                             f"{accuracies} (mean {top[precision]['mean_accuracy']:.4f})", "", ""))
            rows.append(("backbone", "top accuracy bf16 - float32, paired by seed: mean",
                         f"{top['mean_difference_points']:+.2f} pts (per seed "
                         + " / ".join(f"{value:+.1f}" for value in top["paired_difference_points"])
                         + f"; float32 seed range {top['float32_seed_range_points']:.1f} pts)",
                         "within 0.5 pts", _mark(top["pass_within_half_point"])))
            rows.append(("backbone", "linear SVM on float32 / bf16 features (mean of the seeds)",
                         f"{top['float32']['svm_accuracy']:.4f} / {top['mixed_bfloat16']['svm_accuracy']:.4f}", "", ""))
        kernels = data.get("onednn_bf16_conv_kernels_150") or {}
        if kernels.get("conv_gflops_per_s"):
            rates = [layer["gflops_per_s"] for layer in kernels["conv_layers"]]
            rows.append(("backbone", "oneDNN bf16 conv kernels alone, VGG16 150px (ONEDNN_VERBOSE)",
                         f"{kernels['conv_gflops_per_s']:.0f} GFLOP/s ({min(rates):.0f}-{max(rates):.0f} per layer)",
                         "", ""))
        for side, step in data["finetune_step"].items():
            rows.append(("backbone", f"finetune step {side}px: float32 / bf16",
                         f"{step['float32']['images_per_s']:.1f} / {step['mixed_bfloat16']['images_per_s']:.1f} img/s "
                         f"= {step['bf16_speedup']:.2f}x", "reported", ""))
    data = _load("dvc_status")
    if data:
        rows.append(("dvc_status", "load average (1 min) before / after", _loads(data), "< 0.7", ""))
        for layout, figures in data["layouts"].items():
            rows.append(("dvc_status", f"{data['images']} images ({layout}): status cold / warm",
                         f"{figures['status_cold_median_s']:.1f} / {figures['status_warm_median_s']:.1f} s",
                         "", ""))
            rows.append(("dvc_status", f"{data['images']} images ({layout}): no-op repro",
                         f"{figures['repro_noop_median_s']:.1f} s", "<= 3 s",
                         _mark(figures["repro_noop_median_s"] <= 3.0)))
    data = _load("dvc_overhead")
    if data:
        rows.append(("dvc_overhead", "load average (1 min) before / after", _loads(data), "< 0.7", ""))
        which = "tiny profile" if isinstance(data["profile"], dict) else "offline default"
        rows.append(("dvc_overhead", f"pipeline ({which}): no-op repro", f"{data['noop_repro_median_s']:.1f} s",
                     "<= 3 s", _mark(data["pass_noop"])))
        rows.append(("dvc_overhead", f"pipeline ({which}): dvc status", f"{data['status_median_s']:.1f} s", "", ""))
        rows.append(("dvc_overhead", f"after {data['top_change']['change']}: ran",
                     ", ".join(data["top_change"]["ran"]), "top, finetune, report", _mark(data["pass_top_change"])))
    data = _load("scale")
    if data:
        rows.append(("scale", "load average (1 min) before / after", _loads(data), "< 0.7", ""))
        for images, run in data["download_split"].items():
            for stage in ("download", "split"):
                rows.append(("scale", f"{stage} {images} JPEGs", f"{run[stage]['seconds']:.1f} s, "
                             f"{run[stage]['peak_rss_mib']:.0f} MiB", "<= 500 MB",
                             _mark(run[stage]["peak_rss_mib"] * 2**20 / 1e6 <= 500)))
        for stage in ("download", "split"):
            check = data["checks"][stage]
            rows.append(("scale", f"{stage} peak RSS 25k -> 50k", f"{check['growth'] * 100:+.1f} %", "flat",
                         _mark(check["pass_flat"])))
        check = data["checks"]["bottleneck"]
        small, large = data["bottleneck"]["1000"], data["bottleneck"]["10000"]
        rows.append(("scale", "bottleneck 1k / 10k images", f"{small['seconds']:.0f} / {large['seconds']:.0f} s, "
                     f"{small['peak_rss_mib']:.0f} / {large['peak_rss_mib']:.0f} MiB ({check['growth'] * 100:+.1f} %)",
                     "flat", _mark(check["pass_flat"])))
    data = _load("own_images")
    if data:
        rows.append(("own_images", "load average (1 min) before / after", _loads(data), "< 0.7", ""))
        for images, run in data["runs"].items():
            if "inspect" in run:
                rows.append(("own_images", f"folder of {int(images):,} files: `imgclf inspect`",
                             f"{run['inspect']['seconds']:.1f} s, {run['inspect']['peak_rss_mib']:.0f} MiB", "", ""))
            rows.append(("own_images", f"folder of {int(images):,} files: download, split",
                         f"{run['download']['seconds']:.1f} s / {run['split']['seconds']:.1f} s "
                         f"({run['split']['images_per_s']:.0f} img/s), {run['download']['peak_rss_mib']:.0f} / "
                         f"{run['split']['peak_rss_mib']:.0f} MiB", "", ""))
        check = data["checks"]
        rows.append(("own_images", "split peak RSS, smallest -> largest folder", f"{check['split_rss_growth'] * 100:+.1f} %",
                     "within 20 %", _mark(check["pass_split_rss_flat"])))
        rows.append(("own_images", f"no-op dvc repro, {max(data['images']):,}-file data.path",
                     f"{data['noop']['noop_median_s']:.2f} s", "<= 3 s", _mark(check["pass_noop_repro"])))
    data = _load("pack")
    if data:
        rows.append(("pack", "load average (1 min) before / after", _loads(data), "< 0.7", ""))
        for images, run in data["runs"].items():
            rows.append(("pack", f"`imgclf pack`, {int(images):,} files",
                         f"{run['pack']['seconds']:.0f} s, {run['pack']['peak_rss_mib']:.0f} MiB, {run['pack']['shards']} "
                         f"shards; on disk {run['pack']['disk_bytes'] / 1e6:,.0f} MB (the folder: "
                         f"{run['folder']['apparent_bytes'] / 1e6:,.0f} MB in files, {run['folder']['disk_bytes'] / 1e6:,.0f} "
                         f"MB on disk)", "", ""))
            changed = run["one_changed"]
            rows.append(("pack", f"one changed image among {int(images):,}: repack, bytes to push, dvc status",
                         f"{changed['seconds']:.0f} s, {changed['bytes_written'] / 1e6:,.1f} MB, {changed['status_s']:.1f} s",
                         "", ""))
            rows.append(("pack", f"no-op dvc repro (download), data.path = the pack of {int(images):,}",
                         f"{run['noop_pack']['noop_median_s']:.2f} s", "<= 5 s", _mark(run["noop_pack"]["noop_median_s"] <= 5)))
            if "noop_folder" in run:
                rows.append(("pack", f"no-op dvc repro (download), data.path = the {int(images):,}-file folder",
                             f"{run['noop_folder']['noop_median_s']:.2f} s", "", ""))
        check = data["checks"]
        rows.append(("pack", "the pack's disk use / the folder's bytes (largest)", f"{check['pack_disk_ratio']:.2f}",
                     "<= 1.3", _mark(check["pass_pack_disk_ratio"])))
    data = _load("storage")
    if data:
        rows.append(("storage", "load average (1 min) before / after", _loads(data), "< 0.7", ""))
        for name, run in data["inputs"].items():
            rows.append(("storage", f"training input, {run['images']:,} {name} at {run['side']} px: files / shards",
                         f"{run['folders_images_per_s']:,.0f} / {run['shards_images_per_s']:,.0f} img/s "
                         f"(x{run['ratio']:.2f})", ">= x1.0", _mark(run["ratio"] >= 1.0)))
        for images, run in data["runs"].items():
            rows.append(("storage", f"data.storage shards, packed source of {int(images):,}: download, split",
                         f"{run['download']['seconds']:.0f} s / {run['split']['seconds']:.0f} s, "
                         f"{run['download']['peak_rss_mib']:.0f} / {run['split']['peak_rss_mib']:.0f} MiB", "", ""))
            rows.append(("storage", f"{int(images):,}: pack + data/ + DVC cache on disk / the folder's bytes; manifest",
                         f"{run['disk_ratio']:.2f} ({run['disk_ratio_to_folder_on_disk']:.2f} of its disk use); "
                         f"{run['manifest_bytes'] / 1e6:,.1f} MB", "<= 1.3",
                         _mark(run["disk_ratio"] <= 1.3)))
            rows.append(("storage", f"{int(images):,}: no-op dvc repro (download + split)",
                         f"{run['noop']['noop_median_s']:.2f} s", "<= 5 s", _mark(run["noop"]["noop_median_s"] <= 5)))
        check = data["checks"]
        if "rss_growth" in check:
            growth = ", ".join(f"{stage} {value * 100:+.0f} %" for stage, value in check["rss_growth"].items())
            rows.append(("storage", "peak RSS, smallest -> largest", growth, "within 20 %", _mark(check["pass_flat_rss"])))
    data = _load("team_restart")
    if data:
        before = _load("team_restart_moto")  # the same script against the earlier, moto-backed server (--source)
        rows.append(("team_restart", f"make server restart, {data['runs']} runs logged (1 MiB artifact each)",
                     f"{data['restart_s']:.1f} s, {data['restart_rss_mib']} MiB"
                     + (f" (moto-backed store before: {before['restart_s']:.1f} s, {before['restart_rss_mib']} MiB)"
                        if before else ""), "", ""))
    data = _load("resume")
    if data:
        rows.append(("resume", f"chapter finetune ({data['workload']['finetune.epochs']} epochs) killed halfway through "
                     "its last: finish resumed / from the start",
                     f"{data['resumed_s']:.0f} s / {data['full_s']:.0f} s = {data['resumed_over_full']:.2f}",
                     f"<= {data['targets']['resumed_over_full_max']}", _mark(data["checks"]["pass_resumed_over_full"])))
        rows.append(("resume", "resumed outputs byte-identical to an uninterrupted run's", str(data["outputs_identical"]),
                     "True", _mark(data["checks"]["pass_identical"])))
        if "control_identical" in data:
            rows.append(("resume", "control: two uninterrupted runs byte-identical", str(data["control_identical"]),
                         "True", _mark(data["checks"]["pass_control_identical"])))
    data = _load("export")
    if data:
        targets, checks = data["targets"], data["checks"]
        rows.append(("export", f"champion ({data['champion']}) full-integer int8 TFLite size / .keras size",
                     f"{data['champion_int8_size_x_keras']:.3f}", f"<= {targets['int8_size_x_keras_max']}",
                     _mark(checks["pass_int8_size"])))
        rows.append(("export", "champion int8 test accuracy below Keras'", f"{data['champion_int8_accuracy_drop']:.4f}",
                     f"<= {targets['int8_accuracy_drop_max']}", _mark(checks["pass_int8_accuracy"])))
        rows.append(("export", "champion ONNX agreement with Keras' test labels", f"{data['champion_onnx_agreement']:.4f}",
                     f">= {targets['onnx_agreement_min']}", _mark(checks["pass_onnx_agreement"])))
        rows.append(("export", "champion batch-1 latency / Keras'", ", ".join(
            f"{name} {ratio:.2f}" for name, ratio in data["champion_latency_x_keras"].items() if name != "keras"),
            "reported", ""))
    data = _load("search")
    if data:
        grid, tpe = data["grid"], data["tpe"]
        rows.append(("search", f"best baseline accuracy after {data['trials']} trials: TPE / a grid of the same budget "
                     f"(one seed)", f"{tpe['best_so_far'][-1]:.4f} / {grid['best_so_far'][-1]:.4f}", "reported", ""))
        rows.append(("search", "wall time: TPE / grid", f"{tpe['seconds']:.0f} s / {grid['seconds']:.0f} s "
                     f"({tpe['pruned']} trials pruned)", "reported", ""))
    data = _load("inference")
    if data:
        rows.append(("inference", "load average (1 min) before / after", _loads(data), "< 0.7", ""))
        targets, passed = data["targets"], data["pass"]
        photo, digits = data["photo"], data["digits"]
        rows.append(("inference", f"photo CNN 150px, batch {data['batch']}: predict (JPEG files) / bare model call",
                     f"{photo['predict_images_per_s']:.0f} / {photo['bare_images_per_s']:.0f} img/s = "
                     f"{photo['predict_over_bare']:.2f}", f">= {targets['predict_over_bare_min']}",
                     _mark(passed["predict_over_bare"])))
        rows.append(("inference", f"chapter CNN 28px digits (PNG), batch {data['batch']}: predict / bare",
                     f"{digits['predict_images_per_s']:.0f} / {digits['bare_images_per_s']:.0f} img/s = "
                     f"{digits['predict_over_bare']:.2f}", "reported", ""))
        served = data["served"]
        rows.append(("inference", f"served, {served['clients']} clients x 1 image, {served['requests']} requests / "
                     "predict at batch 1", f"{served['requests_per_s']:.1f} / {data['predict_batch1_images_per_s']:.1f} "
                     f"img/s = {data['served_over_predict_b1']:.2f}", f">= {targets['served_over_predict_b1_min']}",
                     _mark(passed["served_over_predict_b1"])))
        rows.append(("inference", "served latency p50 / p99", f"{served['p50_ms']:.1f} / {served['p99_ms']:.1f} ms "
                     f"(p99/p50 {data['p99_over_p50']:.2f}), {served['errors']} errors",
                     f"p99 <= {targets['p99_over_p50_max']} x p50, 0 errors",
                     _mark(passed["p99_over_p50"] and passed["zero_errors"])))
    data = _load("end_to_end")
    if data:
        rows.append(("end_to_end", "load average (1 min) before / after", _loads(data), "< 0.7", ""))
        repro = data["repro"]
        per_stage = ", ".join(f"{name} {seconds:.0f}" for name, seconds in repro["stage_seconds"].items())
        rows.append(("end_to_end", "offline default dvc repro", f"{repro['seconds']:.0f} s", "<= 360 s",
                     _mark(data["pass"])))
        rows.append(("end_to_end", "per stage (s)", per_stage, "", ""))
    return rows


def chapter_table() -> list[str]:
    """Markdown lines: the chapter workload per stage and precision (results/chapter.json), or none."""
    data = _load("chapter")
    if not data:
        return []
    targets = data["targets"]
    machine = data.get("machine", {})
    lines = ["", f"## The chapter workload ({data['images']:,} photo JPEGs, dogs-vs-cats, 1,000 train + 400 test "
             f"per class at 150x150, `dvc repro` in a fresh clone; load before {_loads(data)})", "",
             "Seconds per stage: wall (DVC's stage, process start to saved outputs), its MLflow run, its work "
             "(training loop or extraction), its model's pass over the test split, the compute-bound ideal (the "
             "same steps of the same model on tensors in memory), ideal / work, and the fixed cost (wall - work - test). "
             "Targets: training stages >= "
             f"{targets['train_ratio_min']} of their ideal, bottleneck >= {targets['bottleneck_ratio_min']}, fixed "
             f"<= {targets['fixed_cost_max_s']:.0f} s, augmented / baseline work <= "
             f"{targets['augmented_over_baseline_max']}.", "",
             "| precision | stage | wall | run | work | test | ideal | ratio | fixed | status |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for precision, run in data["runs"].items():
        if "skipped" in run:
            lines.append(f"| {precision} | skipped: {run['skipped']} | | | | | | | | |")
            continue
        for stage, row in run["stages"].items():
            ratio_min = targets["bottleneck_ratio_min"] if stage == "bottleneck" else targets["train_ratio_min"]
            status = f"fixed {_mark(row['fixed_s'] <= targets['fixed_cost_max_s'])}"
            if row["ratio"] is not None:
                status = f"ratio {_mark(row['ratio'] >= ratio_min)}, {status}"
            cells = [_seconds(row.get(key)) for key in ("wall_s", "run_s", "work_s", "test_s", "ideal_s")]
            ratio = "" if row["ratio"] is None else f"{row['ratio']:.2f}"
            lines.append(f"| {precision} | {stage} | " + " | ".join(cells) + f" | {ratio} | {row['fixed_s']:.1f} | "
                         f"{status} |")
        stages = run["stages"]
        if stages.get("baseline", {}).get("work_s") and stages.get("augmented", {}).get("work_s"):
            over = stages["augmented"]["work_s"] / stages["baseline"]["work_s"]
            lines.append(f"| {precision} | augmented / baseline work | | | {over:.2f} | | | | | "
                         f"{_mark(over <= targets['augmented_over_baseline_max'])} |")
        reference = _whole_before(machine, precision)
        if reference:  # the target is a share of the workload before, on the same machine
            seconds, _commit = reference
            share = run["seconds"] / seconds
            verdict = (f"{share:.2f} x {seconds:,.0f} s, the workload's first measurement on this machine: "
                       f"{_mark(share <= targets['whole_share_max'])} (<= {targets['whole_share_max']})")
        else:
            verdict = (f"{_mark(run['seconds'] <= targets['whole_max_s'])} (<= {targets['whole_max_s']:.0f} s: "
                       f"{targets['whole_share_max']} x the workload's first measurement, 427 s on a 2-core EPYC)")
        lines.append(f"| {precision} | whole `dvc repro` | {run['seconds']:.0f} | | | | | | | {verdict} |")
    if machine:
        lines += ["", f"Machine of this table: {machine.get('cpu_model', '?')} "
                  f"({' '.join(machine.get('cpu_flags', []))}), {machine.get('cpu_usable_cores', '?')} cores."]
    return lines


# The chapter workload before its performance work, per machine and precision: the whole `dvc repro`
# (seconds, commit) of the first chapter.py run there. The target (chapter.py) is a share of it.
WHOLE_BEFORE = {("Intel(R) Xeon(R) Processor", 2): {"float32": (1172.4, "2f9fe13")}}


def _whole_before(machine: dict, precision: str) -> tuple[float, str] | None:
    return WHOLE_BEFORE.get((machine.get("cpu_model"), machine.get("cpu_usable_cores")), {}).get(precision)


def _seconds(value: float | None) -> str:
    return "" if value is None or value != value else f"{value:.1f}"


def write_summary(total_s: float | None, runs: dict) -> str:
    machine = machine_info()
    lines = [
        "# Benchmark summary",
        "",
        f"Machine: {machine['cpu_model']} ({' '.join(machine['cpu_flags']) or 'flags unknown'}), "
        f"{machine['cpu_usable_cores']} cores, {machine['memory_gib']} GiB; "
        f"TensorFlow {machine['versions']['tensorflow']}, Keras {machine['versions']['keras']}, "
        f"DVC {machine['versions']['dvc']}, MLflow {machine['versions']['mlflow']}.",
        "Load is the 1-minute load average before / after each benchmark (other work on the machine "
        "pollutes figures taken above ~0.7). Each results/<name>.json holds the full figures.",
        "",
        "| benchmark | figure | value | target | status |",
        "|---|---|---|---|---|",
    ]
    for row in summary_rows():
        lines.append("| " + " | ".join(cell.replace("|", "/") for cell in row) + " |")
    lines += chapter_table()
    if runs:
        lines += ["", "Run times: " + ", ".join(f"{name} {info['seconds']:.0f} s (exit {info['exit']})"
                                                for name, info in runs.items())]
    if total_s is not None:
        busy = sum(info["seconds"] for name, info in runs.items() if name in DEFAULT)
        lines.append(f"Total `python benchmarks/run_all.py` wall time of the default set (`make bench`): "
                     f"{total_s / 60:.1f} min ({busy / 60:.1f} min running its benchmarks, the rest waiting for a "
                     f"quiet machine).")
    text = "\n".join(lines) + "\n"
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "summary.md").write_text(text)
    return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", default="", help="comma-separated: " + ", ".join(BENCHMARKS))
    parser.add_argument("--summary-only", action="store_true")
    parser.add_argument("--wait-quiet", type=float, default=0.0, metavar="SECONDS")
    args = parser.parse_args()
    names = [name for name in args.only.split(",") if name] or DEFAULT
    unknown = sorted(set(names) - set(BENCHMARKS))
    if unknown:
        raise SystemExit(f"run_all.py: unknown benchmark(s) {unknown}: choose from {list(BENCHMARKS)}")
    runs: dict = {}
    started = time.perf_counter()
    if not args.summary_only:
        # end_to_end keeps its reproduced clone for dvc_overhead, which then measures the real
        # (offline default) pipeline instead of reproducing a second, tiny one: ~2 minutes saved.
        share = "end_to_end" in names and "dvc_overhead" in names
        clone = None
        try:
            for name in names:
                extra: tuple[str, ...] = ()
                if name == "end_to_end" and share:
                    extra = ("--keep",)
                if name == "dvc_overhead" and clone:
                    extra = ("--clone", clone)
                runs[name] = run(name, args.wait_quiet, extra)
                if name == "end_to_end" and share and runs[name]["exit"] == 0:
                    clone = json.loads((RESULTS / "end_to_end.json").read_text()).get("kept_clone")
        finally:
            if clone:
                shutil.rmtree(Path(clone).parent, ignore_errors=True)
    total = None if args.summary_only else time.perf_counter() - started
    record = RESULTS / "run_all.json"
    last = json.loads(record.read_text()) if record.is_file() else {"runs": {}, "total_s": None}
    if runs:
        entry = {"runs": runs, "total_s": total, "machine": machine_info()}
        if set(names) != set(DEFAULT):  # a subset (`make bench-chapter`, --only): its times join the
            # last full run's, whose total, machine and note stay the `make bench` figures
            entry = last | {"runs": last["runs"] | runs}
            runs, total = entry["runs"], entry["total_s"]
        record.write_text(json.dumps(entry, indent=2) + "\n")
    else:  # --summary-only: the recorded times
        runs, total = last["runs"], last["total_s"]
    print()
    print(write_summary(total, runs))
    if any(info["exit"] != 0 for info in runs.values()):
        raise SystemExit(1)


if __name__ == "__main__":
    main()
