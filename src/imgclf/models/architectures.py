"""`cnn.architecture`: the model baseline and augmented train, from the chapter's simple CNN to its "bigger models".

Every architecture is the same kind of model: uint8 images in, rescaled to [0, 1] inside (then any
fitted featurewise layers, imgclf.training.standardization), the architecture's body, and its head — a float32
softmax over the classes — once, or once per label column on the shared body (data.label_columns).
Each body scales itself to the input, 28x28 grayscale up to 224x224 RGB.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping, Sequence

import keras
from keras import layers

from imgclf.models import alexnet, simple_cnn, squeezenet, stn
from imgclf.params import CnnParams

Body = Callable[[keras.KerasTensor, CnnParams], keras.KerasTensor]
Head = Callable[[keras.KerasTensor, int, str], keras.KerasTensor]


@dataclass(frozen=True)
class Architecture:
    body: Body  # [0, 1] pixels -> features
    head: Head  # features, classes, layer name -> probabilities
    name: Callable[[CnnParams], str]  # the model's name


ARCHITECTURES: dict[str, Architecture] = {
    "simple_cnn": Architecture(simple_cnn.simple_cnn_body, simple_cnn.classifier, lambda config: f"simple_cnn_{config.layout}"),
    "alexnet": Architecture(alexnet.body, simple_cnn.classifier, lambda config: "alexnet"),
    "squeezenet": Architecture(squeezenet.body, squeezenet.classifier, lambda config: "squeezenet"),
    "stn": Architecture(stn.body, simple_cnn.classifier, lambda config: f"stn_simple_cnn_{config.layout}"),
}


def build(
    input_shape: tuple[int, int, int],
    num_classes: int,
    config: CnnParams,
    preprocessing: Sequence[keras.layers.Layer] = (),
    label_heads: Mapping[str, Sequence[str]] | None = None,
) -> keras.Model:
    """The `config.architecture` classifier for images of `input_shape`; `preprocessing`: fitted layers on
    [0, 1] pixels. `heads` ({column: class names}, several label columns): one softmax head per column on the
    shared body, the model's outputs a dict by column (each layer `class_<column>`); else one head `class`."""
    architecture = ARCHITECTURES[config.architecture]
    inputs = keras.Input(shape=input_shape, dtype="uint8", name="image")
    # uint8 pixels in, as a deployed model receives them; float32 [0, 1] whatever the precision policy.
    x = layers.Rescaling(1.0 / 255.0, dtype="float32", name="rescale")(inputs)
    for layer in preprocessing:
        x = layer(x)
    features = architecture.body(x, config)
    if label_heads:
        outputs = {column: architecture.head(features, len(names), f"class_{column}") for column, names in label_heads.items()}
        return keras.Model(inputs, outputs, name=architecture.name(config))
    return keras.Model(inputs, architecture.head(features, num_classes, "class"), name=architecture.name(config))
