"""`cnn.architecture`: the model baseline and augmented train, from the chapter's simple CNN to its "bigger models".

Every architecture is the same kind of model: uint8 images in, rescaled to [0, 1] inside (then any
fitted featurewise layers, imgclf.featurewise), the architecture's body, a float32 softmax over the
classes out (`cnn.classifier`). Each body scales itself to the input, 28x28 grayscale up to 224x224 RGB.
"""

from __future__ import annotations

from typing import Callable, Sequence

import keras
from keras import layers

from imgclf.models import alexnet, cnn, squeezenet, stn
from imgclf.params import CnnParams

Body = Callable[[keras.KerasTensor, int, CnnParams], keras.KerasTensor]
# name -> (body: [0, 1] pixels -> class probabilities, the model's name for a CnnParams)
BODIES: dict[str, tuple[Body, Callable[[CnnParams], str]]] = {
    "simple_cnn": (cnn.simple_cnn_body, lambda config: f"simple_cnn_{config.layout}"),
    "alexnet": (alexnet.body, lambda config: "alexnet"),
    "squeezenet": (squeezenet.body, lambda config: "squeezenet"),
    "stn": (stn.body, lambda config: f"stn_simple_cnn_{config.layout}"),
}


def build(
    input_shape: tuple[int, int, int],
    num_classes: int,
    config: CnnParams,
    preprocessing: Sequence[keras.layers.Layer] = (),
) -> keras.Model:
    """The `config.architecture` classifier for images of `input_shape`; `preprocessing`: fitted layers on [0, 1] pixels."""
    body, name = BODIES[config.architecture]
    inputs = keras.Input(shape=input_shape, dtype="uint8", name="image")
    # uint8 pixels in, as a deployed model receives them; float32 [0, 1] whatever the precision policy.
    x = layers.Rescaling(1.0 / 255.0, dtype="float32", name="rescale")(inputs)
    for layer in preprocessing:
        x = layer(x)
    return keras.Model(inputs, body(x, num_classes, config), name=name(config))
