"""SqueezeNet (Iandola et al., 2016; the v1.1 layout), one of the chapter's "bigger models", trainable from scratch.

Fire modules — a 1x1 "squeeze" convolution feeding 1x1 and 3x3 "expand" convolutions, concatenated —
between max pools; dropout (`cnn.dropout`) after the last; then a 1x1 convolution to one channel per
class, global average pooling and softmax: no fully connected layer. Scaled to the input: the first
convolution has stride 2 from 64 px on and stride 1 below (28x28 digits); "same" pooling.

Two departures from the paper, both for a network without batch normalization to train from scratch:
He initialisation of the ReLU convolutions, and no ReLU on the class scores before the average pool
(a ReLU there clips every negative score to 0). Measured on 4,000 offline-default digits, 4 epochs:
the paper's ReLU with Glorot initialisation stayed at chance (0.09-0.10 on the other 1,000), He alone
reached 0.56, He without that ReLU 0.87.
"""

from __future__ import annotations

import keras
from keras import layers

from imgclf.params import CnnParams

INIT = "he_uniform"  # for the ReLU convolutions (see above)
# (squeeze, expand) filters per fire module; "pool" is a 3x3 stride-2 max pool between them.
FIRES = ((16, 64), (16, 64), "pool", (32, 128), (32, 128), "pool", (48, 192), (48, 192), (64, 256), (64, 256))


def fire(x: keras.KerasTensor, squeeze: int, expand: int, name: str) -> keras.KerasTensor:
    """A fire module: squeeze 1x1 -> (expand 1x1, expand 3x3), concatenated."""
    squeezed = layers.Conv2D(squeeze, 1, activation="relu", kernel_initializer=INIT, name=f"{name}_squeeze1x1")(x)
    expand1 = layers.Conv2D(expand, 1, activation="relu", kernel_initializer=INIT, name=f"{name}_expand1x1")(squeezed)
    expand3 = layers.Conv2D(expand, 3, padding="same", activation="relu", kernel_initializer=INIT,
                            name=f"{name}_expand3x3")(squeezed)
    return layers.Concatenate(name=f"{name}_concat")([expand1, expand3])


def body(x: keras.KerasTensor, config: CnnParams) -> keras.KerasTensor:
    """[0, 1] pixels -> the last fire module's feature map, after dropout."""
    stride = 2 if min(x.shape[1:3]) >= 64 else 1
    x = layers.Conv2D(64, 3, strides=stride, padding="same", activation="relu", kernel_initializer=INIT, name="conv1")(x)
    x = layers.MaxPooling2D(3, strides=2, padding="same", name="pool1")(x)
    number, pools = 2, 1
    for entry in FIRES:
        if entry == "pool":
            pools += 1
            x = layers.MaxPooling2D(3, strides=2, padding="same", name=f"pool{pools}")(x)
            continue
        x = fire(x, *entry, name=f"fire{number}")
        number += 1
    return layers.Dropout(config.dropout, name="fire9_dropout")(x)


def classifier(x: keras.KerasTensor, num_classes: int, name: str = "class") -> keras.KerasTensor:
    """SqueezeNet's head: a 1x1 convolution to one channel per class (the class scores: no ReLU, see above),
    global average pooling, softmax (float32 even under a mixed-precision policy), named `name`."""
    suffix = name.removeprefix("class")
    x = layers.Conv2D(num_classes, 1, name=f"conv10{suffix}")(x)
    x = layers.GlobalAveragePooling2D(name=f"pool10{suffix}")(x)
    return layers.Activation("softmax", dtype="float32", name=name)(x)
