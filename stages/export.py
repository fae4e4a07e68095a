"""export: the champion (or every model stage) as SavedModel, TFLite (float32, dynamic-range int8, full-integer int8)
and ONNX, each run on the whole test split in its own runtime: accuracy, agreement with Keras, size, latency, memory."""

import os
import platform
import shutil

from imgclf import atomic, paths
from imgclf.data import tfdata
from imgclf.inference import export
from imgclf.inference.classifier import Classifier
from imgclf.pipeline import export_report, stage


def run(params, tracked) -> None:
    settings = params.export
    chosen = export_report.chosen_stages(settings.stages)
    test_files = tfdata.test_files()
    rows = []
    with atomic.directory(paths.EXPORTS) as folder:
        for name in chosen:
            hint = f"run the {name} stage first (dvc repro {name})"
            classifier = Classifier.load(paths.model_file(name), paths.classifier_info(name), hint)
            images = export_report.split_images(classifier, test_files)
            labels = export_report.labels_of(classifier, test_files)
            calibration = export_report.split_images(
                classifier, export_report.calibration_files(settings.calibration_images, params.seed))
            (folder / name).mkdir()
            shutil.copy(paths.classifier_info(name), folder / name / paths.classifier_info(name).name)
            failed = export.write(paths.model_file(name), folder / name, settings.formats, calibration, settings.onnx_opset)
            for fmt, reason in failed.items():
                print(f"export: {name} {fmt}: not exported: {reason}", flush=True)
            rows += export_report.score(name, folder / name, paths.model_file(name), classifier, images, labels,
                                        settings.formats, failed, params.seed)
    atomic.write_json(paths.metrics_file("export"), export_report.metrics(rows, len(test_files)))
    frame = export_report.table(rows)
    machine = f"{platform.machine()}, {os.cpu_count()} logical CPUs"
    atomic.write_text(export_report.REPORT_FILE, export_report.render(frame, machine))
    atomic.write_text(export_report.TABLE_FILE, frame.to_csv(index=False, lineterminator="\n"))
    tracked.log_metrics(export_report.timings(rows))
    tracked.log_artifact(export_report.REPORT_FILE)
    tracked.log_artifact(export_report.TABLE_FILE)
    if export_report.plot(frame):
        tracked.log_image(export_report.PLOT_FILE)
    print(export_report.render(frame, machine), flush=True)


if __name__ == "__main__":
    stage.main(run)
