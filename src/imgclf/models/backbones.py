"""keras.applications backbones without their top: weights, input size, preprocessing, frozen layers.

One table (`FAMILIES`) says, per backbone, which application builds it, its own `preprocess_input`,
its smallest input, its ImageNet weights file, and where its last convolutional block starts:
fine-tuning trains that block and freezes every layer before it.

The saved models must load with `safe_mode=True`, so there is no Lambda layer anywhere: grayscale
becomes RGB by concatenating the channel three times, and the family's `preprocess_input` (an
affine map per channel, plus RGB->BGR for the caffe-style families) becomes a frozen 1x1
convolution whose kernel and bias are read off that very function.
"""

from __future__ import annotations

import os
import re
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import keras
import numpy as np
import tensorflow as tf
from keras import applications, layers

from imgclf.errors import UserError
from imgclf.params import BackboneParams

WEIGHTS_HOST = "storage.googleapis.com"  # where keras.applications downloads ImageNet weights from
MOBILENET_SIZES = (96, 128, 160, 192, 224)  # sides with their own MobileNetV2 ImageNet weights


@dataclass(frozen=True)
class Family:
    """What the pipeline needs to know about one keras.applications backbone."""

    application: Callable[..., keras.Model]
    preprocess_input: Callable[[np.ndarray], np.ndarray]
    blocks: tuple[str, ...]  # regexes (re.match) for the first layer of each block that can be trained, in order
    min_side: int  # keras.applications' smallest input height/width without the top
    weights_file: str  # notop ImageNet weights in $KERAS_HOME/models ({side} for MobileNetV2)

    @property
    def last_block(self) -> str:
        """The regex of the last block's first layer."""
        return self.blocks[-1]


# Fine-tuning the last N blocks (finetune.trainable: blocks:N; last_block is blocks:1): every layer
# before the first match of blocks[-N] is frozen; the match and every layer after it (those blocks,
# the BN/ReLU tail) are trainable. Layers before blocks[0] (a stem) train only with `all`.
FAMILIES: dict[str, Family] = {
    "vgg16": Family(
        applications.VGG16, applications.vgg16.preprocess_input, tuple(rf"block{k}_" for k in range(1, 6)), 32,
        "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5",
    ),
    # conv1 is the stem; conv2..conv5 the four stages of residual blocks.
    "resnet50": Family(
        applications.ResNet50, applications.resnet.preprocess_input, tuple(rf"conv{k}_" for k in range(2, 6)), 32,
        "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5",
    ),
    # mixedK is the output of inception module K (0..10): module K + 1 follows it, so "from mixed9 on"
    # is the last module. Module 0 and the stem train only with `all`.
    "inception_v3": Family(
        applications.InceptionV3, applications.inception_v3.preprocess_input, tuple(rf"mixed{k}$" for k in range(10)),
        75, "inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5",
    ),
    # conv2..conv5: the four dense blocks (a block's transition layers, poolK_, go with it).
    "densenet121": Family(
        applications.DenseNet121, applications.densenet.preprocess_input, tuple(rf"conv{k}_" for k in range(2, 6)), 32,
        "densenet121_weights_tf_dim_ordering_tf_kernels_notop.h5",
    ),
    # expanded_conv, block_1 .. block_16: the inverted-residual blocks; Conv_1 (+ its BN and ReLU) follows the last.
    "mobilenet_v2": Family(
        applications.MobileNetV2, applications.mobilenet_v2.preprocess_input,
        ("expanded_conv_", *(rf"block_{k}_" for k in range(1, 17))), 32,
        "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_{side}_no_top.h5",
    ),
}


def describe(backbone: BackboneParams) -> dict:
    """What every transfer-learning output reports about its backbone (weights included)."""
    return {
        "backbone": backbone.name,
        "weights": backbone.weights,
        "input_size": list(backbone.input_size),
        "precision": backbone.precision,
    }


def check(backbone: BackboneParams) -> None:
    """The params errors a stage must raise before it builds anything: input size, precision."""
    check_input_size(backbone.name, backbone.input_size)
    check_precision(backbone.precision)


def check_input_size(name: str, size: tuple[int, int]) -> None:
    """A params error naming backbone.input_size when the backbone cannot take `size`."""
    smallest = FAMILIES[name].min_side
    if min(size) < smallest:
        raise UserError(
            f"params.yaml: backbone.input_size = [{size[0]}, {size[1]}]: {name} needs at least "
            f"{smallest}x{smallest}: set backbone.input_size to [{smallest}, {smallest}] or larger"
        )


def check_precision(precision: str) -> None:
    """mixed_float16 needs a GPU: on a CPU it is emulated and slower than float32."""
    if precision == "mixed_float16" and not tf.config.list_physical_devices("GPU"):
        raise UserError(
            "params.yaml: backbone.precision = mixed_float16: needs a GPU and none is visible: "
            "use mixed_bfloat16 (CPUs with AMX or AVX-512 BF16) or float32"
        )


def weights_file_name(name: str, size: tuple[int, int]) -> str:
    """The file keras.applications caches the notop ImageNet weights of `name` under."""
    height, width = size
    # MobileNetV2 has weights for a few square sizes and falls back to 224's (as Keras does).
    side = height if height == width and height in MOBILENET_SIZES else 224
    return FAMILIES[name].weights_file.format(side=side)


def keras_cache_dir() -> Path:
    """$KERAS_HOME/models (default ~/.keras/models): where keras.applications caches weights."""
    home = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    return Path(home) / "models"


def weights_host_reachable(timeout_s: float = 3.0) -> bool:
    """One quick TCP connect to the weights host, so an offline machine fails in seconds."""
    try:
        with socket.create_connection((WEIGHTS_HOST, 443), timeout=timeout_s):
            return True
    except OSError:
        return False


def _offline_error(name: str, file_name: str, why: str) -> UserError:
    return UserError(
        f"ImageNet weights for {name} are not cached and {why}: place {file_name} in "
        f"$KERAS_HOME/models, set backbone.weights to a file path, or set backbone.weights: none"
    )


def resolve_weights(backbone: BackboneParams) -> str | None:
    """What to hand keras.applications as `weights`: None, a file path, or "imagenet" (download).

    Runs before anything is written: a missing file or an offline machine stops the stage here.
    Never falls back to random weights: `none` is the only way to get them.
    """
    if backbone.weights == "none":
        return None
    if backbone.weights != "imagenet":
        if not Path(backbone.weights).is_file():
            raise UserError(
                f"params.yaml: backbone.weights = {backbone.weights}: file not found: give the "
                f"path of a weights file, or imagenet, or none"
            )
        return backbone.weights
    file_name = weights_file_name(backbone.name, backbone.input_size)
    cached = keras_cache_dir() / file_name
    if cached.is_file():
        return str(cached)
    if not weights_host_reachable():
        raise _offline_error(backbone.name, file_name, "the network is unreachable")
    return "imagenet"


def build_backbone(backbone: BackboneParams, seed: int, weights: str | None) -> keras.Model:
    """The application without its top at backbone.input_size, RGB; `weights` from resolve_weights.

    The random initialisation is reseeded here, so `weights: none` gives the same network in every
    stage (bottleneck's features and finetune's backbone agree).
    """
    family = FAMILIES[backbone.name]
    keras.utils.set_random_seed(seed)
    try:
        return family.application(
            include_top=False, weights=weights, input_shape=(*backbone.input_size, 3)
        )
    except Exception as error:
        if weights == "imagenet":
            file_name = weights_file_name(backbone.name, backbone.input_size)
            raise _offline_error(backbone.name, file_name, f"the download failed ({error})") from None
        if weights is not None:
            raise UserError(
                f"params.yaml: backbone.weights = {weights}: cannot be loaded into {backbone.name} "
                f"without its top ({type(error).__name__}: {error}): give a notop weights file "
                f"for this backbone"
            ) from None
        raise


def preprocessing_layer(name: str) -> layers.Conv2D:
    """The family's preprocess_input on 0..255 pixels as a frozen float32 1x1 convolution (no Lambda)."""
    preprocess = FAMILIES[name].preprocess_input
    probes = np.concatenate([np.zeros((1, 3)), 255.0 * np.eye(3)]).reshape(4, 1, 1, 3)
    mapped = np.asarray(preprocess(probes.astype("float32")), dtype="float64").reshape(4, 3)
    bias = mapped[0]
    kernel = (mapped[1:] - bias) / 255.0  # kernel[input channel, output channel]
    layer = layers.Conv2D(3, 1, trainable=False, dtype="float32", name=f"{name}_preprocess")
    layer.build((None, None, None, 3))
    layer.set_weights([kernel.reshape(1, 1, 3, 3).astype("float32"), bias.astype("float32")])
    return layer


def build_extractor(
    backbone: BackboneParams,
    seed: int,
    weights: str | None,
    image_shape: tuple[int, int, int],
) -> keras.Model:
    """uint8 images as the input pipeline yields them -> RGB, resized, preprocessed -> backbone features.

    The backbone runs with training=False, so its BatchNorm layers stay in inference mode while
    fine-tuning trains its last block (the Keras transfer-learning guide's advice).
    """
    inputs = keras.Input(shape=image_shape, dtype="uint8", name="image")
    x = layers.Rescaling(1.0, dtype="float32", name="to_float")(inputs)  # 0..255, as preprocess_input expects
    if image_shape[-1] == 1:
        x = layers.Concatenate(axis=-1, dtype="float32", name="gray_to_rgb")([x, x, x])
    if tuple(image_shape[:2]) != tuple(backbone.input_size):
        x = layers.Resizing(*backbone.input_size, dtype="float32", name="resize")(x)
    x = preprocessing_layer(backbone.name)(x)
    base = build_backbone(backbone, seed, weights)
    outputs = base(x, training=False)
    return keras.Model(inputs, outputs, name=f"{backbone.name}_extractor")


def base_of(extractor: keras.Model) -> keras.Model:
    """The keras.applications model nested in an extractor."""
    return next(layer for layer in extractor.layers if isinstance(layer, keras.Model))


def trained_blocks(name: str, trainable: str) -> int | None:
    """How many of the backbone's blocks `finetune.trainable` trains: last_block 1, blocks:N N,
    all None (every layer), head 0; a params error when the backbone has fewer blocks."""
    count = len(FAMILIES[name].blocks)
    if trainable == "all":
        return None
    if trainable == "head":
        return 0
    wanted = 1 if trainable == "last_block" else int(trainable.split(":", 1)[1])
    if wanted > count:
        raise UserError(f"params.yaml: finetune.trainable = {trainable}: {name} has {count} blocks: "
                        f"use blocks:1 to blocks:{count}, last_block, all or head")
    return wanted


def freeze(base: keras.Model, name: str, blocks: int | None) -> int:
    """Freeze every layer of `base` before its last `blocks` blocks (None: freeze nothing, 0: everything);
    return how many layers are frozen."""
    start = 0
    if blocks == 0:
        start = len(base.layers)
    elif blocks is not None:
        pattern = re.compile(FAMILIES[name].blocks[-blocks])
        names = [layer.name for layer in base.layers]
        start = next((index for index, text in enumerate(names) if pattern.match(text)), None)
        if start is None:
            raise ValueError(f"{name}: no layer matches the block pattern {pattern.pattern!r}")
    base.trainable = True
    frozen = 0
    for index, layer in enumerate(base.layers):
        layer.trainable = index >= start
        if not layer.trainable and not isinstance(layer, layers.InputLayer):
            frozen += 1
    return frozen


def forward_flops(model: keras.Model) -> int:
    """FLOPs (2 x multiply-adds) of one image through the conv and dense layers of `model`."""
    total = 0
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            total += forward_flops(layer)
        elif isinstance(layer, (layers.Conv2D, layers.DepthwiseConv2D, layers.Dense)):
            total += _layer_flops(layer)
    return total


def _layer_flops(layer: layers.Layer) -> int:
    # Conv2D kernel (kh, kw, in, out), DepthwiseConv2D (kh, kw, channels, multiplier), Dense
    # (in, out): each output position costs one multiply-add per kernel entry.
    output_positions = int(np.prod(layer.output.shape[1:-1]))  # H*W for convs, 1 for Dense
    return 2 * output_positions * int(np.prod(layer.kernel.shape))
