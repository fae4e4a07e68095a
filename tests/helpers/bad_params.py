"""Bad params.yaml texts, one per kind of mistake, each with the one-line message it must give."""

from __future__ import annotations

import yaml

from imgclf.params import set_dotted

from helpers.workspace import REPO


def repo_params() -> dict:
    return yaml.safe_load((REPO / "params.yaml").read_text())


def edited(*edits) -> str:
    """The repo's params.yaml with edits applied: ("set", key, value) or ("del", key)."""
    raw = repo_params()
    for edit in edits:
        if edit[0] == "set":
            set_dotted(raw, edit[1], edit[2])
        else:
            *parents, last = edit[1].split(".")
            node = raw
            for key in parents:
                node = node[key]
            del node[last]
    return yaml.safe_dump(raw, sort_keys=False)


# (id, params.yaml text, regex the message must match in full)
CASES = [
    ("unknown-section", edited(("set", "colour", {"mode": "rgb"})),
     r"params\.yaml: colour = \{mode\}: unknown key; allowed: seed, data, .*"),
    ("unknown-key", edited(("set", "data.train_per_klass", 10)),
     r"params\.yaml: data\.train_per_klass = 10: unknown key; allowed: source, label_mode, label_columns, archive, "
     r"path, train_per_class, .*"),
    ("missing-key", edited(("del", "data.test_per_class")),
     r"params\.yaml: data\.test_per_class is missing: add it .*"),
    ("missing-section", edited(("del", "mlflow")),
     r"params\.yaml: mlflow is missing: add it .*"),
    ("wrong-type-int", edited(("set", "data.train_per_class", "many")),
     r"params\.yaml: data\.train_per_class = many: must be an integer >= 1 or all"),
    ("wrong-type-float-for-int", edited(("set", "data.train_per_class", 10.5)),
     r"params\.yaml: data\.train_per_class = 10\.5: must be an integer >= 1 or all"),
    ("wrong-type-bool-for-int", edited(("set", "seed", True)),
     r"params\.yaml: seed = true: must be an integer in \[0, 2147483647\]"),
    ("section-not-mapping", edited(("set", "data", 5)),
     r"params\.yaml: data = 5: must be a mapping of keys"),
    ("out-of-range-negative", edited(("set", "data.train_per_class", -1)),
     r"params\.yaml: data\.train_per_class = -1: must be an integer >= 1 or all"),
    ("out-of-range-zero", edited(("set", "data.test_per_class", 0)),
     r"params\.yaml: data\.test_per_class = 0: must be an integer >= 1 or all"),
    ("out-of-range-seed", edited(("set", "seed", 2**31)),
     r"params\.yaml: seed = 2147483648: must be an integer in \[0, 2147483647\]"),
    ("out-of-range-fraction", edited(("set", "data.validation_fraction", 0.5)),
     r"params\.yaml: data\.validation_fraction = 0\.5: must be a number in \[0\.0, 0\.5\)"),
    ("out-of-range-nan", edited(("set", "data.validation_fraction", float("nan"))),
     r"params\.yaml: data\.validation_fraction = nan: must be a number in \[0\.0, 0\.5\)"),
    ("unknown-source", edited(("set", "data.source", "imagenet")),
     r"params\.yaml: data\.source = imagenet: must be one of mnist-sample, mnist, fashion-mnist, "
     r"cifar10, cifar100, dogs-vs-cats, folder, csv"),
    ("unknown-distribution", edited(("set", "train.distribute", "multiworker")),
     r"params\.yaml: train\.distribute = multiworker: must be one of none, mirrored"),
    ("coarse-labels-elsewhere", edited(("set", "data.label_mode", "coarse")),
     r"params\.yaml: data\.label_mode = coarse: only cifar100 has coarse labels: use fine"),
    ("bad-label-mode", edited(("set", "data.label_mode", "super")),
     r"params\.yaml: data\.label_mode = super: must be one of fine, coarse"),
    ("convnet-three-filters", edited(("set", "convnet.filters", [32, 64, 128])),
     r"params\.yaml: convnet\.filters = \[32, 64, 128\]: must be a list of 2 integers in \[1, 2048\]"),
    ("whitening-too-large", edited(("set", "augmentation.whitening", True), ("set", "image.size", [65, 64])),
     r"params\.yaml: augmentation\.whitening = true: ZCA whitening takes images of at most 64x64 pixels "
     r"\(image\.size is 65x64\): set image\.size, or whitening: false"),
    ("crop-zero", edited(("set", "augmentation.crop", 0)),
     r"params\.yaml: augmentation\.crop = 0: must be a number in \[0\.1, 1\.0\]"),
    ("bad-architecture", edited(("set", "cnn.architecture", "vgg16")),
     r"params\.yaml: cnn\.architecture = vgg16: must be one of simple_cnn, alexnet, squeezenet, stn"),
    ("trainable-blocks-zero", edited(("set", "finetune.trainable", "blocks:0")),
     r"params\.yaml: finetune\.trainable = blocks:0: must be last_block, blocks:N \(the last N blocks, N >= 1\), all or head"),
    ("label-columns-without-csv", edited(("set", "data.label_columns", ["pattern", "color"])),
     r"params\.yaml: data\.label_columns = \[pattern, color\]: label columns come from a labels CSV: set "
     r"data\.source: csv, or leave \[label\]"),
    ("label-columns-reserved", edited(("set", "data.label_columns", ["label", "split"])),
     r"params\.yaml: data\.label_columns = \[label, split\]: must be a non-empty list of distinct column names .*"),
    ("bad-non-rgb", edited(("set", "data.non_rgb", "keep")),
     r"params\.yaml: data\.non_rgb = keep: must be one of convert, skip"),
    ("bad-archive-type", edited(("set", "data.archive", 7)),
     r"params\.yaml: data\.archive = 7: must be null or a path to a file"),
    ("empty-experiment", edited(("set", "mlflow.experiment", "  ")),
     r"params\.yaml: mlflow\.experiment =   : must be a non-empty string"),
    ("registered-model-with-slash", edited(("set", "mlflow.registered_model", "team/imgclf")),
     r"params\.yaml: mlflow\.registered_model = team/imgclf: must be letters, digits, '\.', '_' or '-' "
     r"\(it is used in models:/<name>@champion\)"),
    ("image-size-too-small", edited(("set", "image.size", [4, 28])),
     r"params\.yaml: image\.size = \[4, 28\]: must be auto or \[height, width\], integers in \[8, 1024\]"),
    ("image-size-one-side", edited(("set", "image.size", [28])),
     r"params\.yaml: image\.size = \[28\]: must be auto or .*"),
    ("image-size-float", edited(("set", "image.size", [28, 28.5])),
     r"params\.yaml: image\.size = \[28, 28\.5\]: must be auto or .*"),
    ("image-size-word", edited(("set", "image.size", "big")),
     r"params\.yaml: image\.size = big: must be auto or .*"),
    ("image-size-bool", edited(("set", "image.size", [True, 28])),
     r"params\.yaml: image\.size = \[true, 28\]: must be auto or .*"),
    ("invalid-yaml", "seed: 42\ndata:\n  source: [mnist-sample\n",
     r"params\.yaml: not valid YAML \(line \d+\): fix the syntax"),
    ("invalid-yaml-tab", "seed: 42\ndata:\n\tsource: mnist\n",
     r"params\.yaml: not valid YAML \(line 3\): fix the syntax"),
    ("empty-file", "",
     r"params\.yaml: must be a mapping of sections: .*"),
    ("duplicate-key", (REPO / "params.yaml").read_text().replace(
        "  train_per_class:", "  train_per_class: 3\n  train_per_class:", 1),
     r"params\.yaml: train_per_class is set twice \(line \d+\): keep one"),
]
