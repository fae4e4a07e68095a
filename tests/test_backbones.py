"""The backbone zoo: builds with weights none, frozen layers per family, preprocessing, weights errors."""

from __future__ import annotations

import re

import keras
import numpy as np
import pytest
import tensorflow as tf

from imgclf.errors import UserError
from imgclf.models import backbones
from imgclf.params import BackboneParams

# (smallest input, frozen layers, all layers without the InputLayer, feature shape at that input)
ZOO = {
    "vgg16": (32, 14, 18, (1, 1, 512)),
    "resnet50": (32, 142, 174, (1, 1, 2048)),
    "inception_v3": (75, 278, 310, (1, 1, 2048)),
    "densenet121": (32, 312, 426, (1, 1, 1024)),
    "mobilenet_v2": (32, 142, 153, (1, 1, 1280)),
}
# Names of layers that must stay frozen: anything from an earlier block.
EARLIER_BLOCKS = {
    "vgg16": r"block[1-4]_",
    "resnet50": r"conv[1-4]_",
    "inception_v3": r"mixed[0-8]$",
    "densenet121": r"(conv[1-4]_|pool[1-4]_)",
    "mobilenet_v2": r"block_(1[0-5]|[1-9])_",
}


def backbone_params(name: str = "vgg16", weights: str = "none", side: int = 32,
                    precision: str = "float32") -> BackboneParams:
    return BackboneParams(name=name, weights=weights, input_size=(side, side), precision=precision)


@pytest.mark.parametrize("name", sorted(ZOO))
def test_each_backbone_builds_small_and_freezes_up_to_its_last_block(name):
    side, frozen_count, layer_count, feature_shape = ZOO[name]
    extractor = backbones.build_extractor(backbone_params(name, side=side), 0, None, (28, 28, 1))
    assert tuple(extractor.output.shape[1:]) == feature_shape

    base = backbones.base_of(extractor)
    assert backbones.freeze(base, name, backbones.trained_blocks(name, "last_block")) == frozen_count
    layers = [layer for layer in base.layers if not isinstance(layer, keras.layers.InputLayer)]
    assert len(layers) == layer_count
    trainable = [layer for layer in layers if layer.trainable]
    assert len(trainable) == layer_count - frozen_count
    assert re.match(backbones.FAMILIES[name].last_block, trainable[0].name)
    assert not [layer.name for layer in trainable if re.match(EARLIER_BLOCKS[name], layer.name)]
    assert base.trainable_weights, "the last block has weights to train"


# finetune.trainable -> trainable backbone layers (InputLayer excluded), per backbone: (blocks, last_block,
# blocks:2, every block, all). head trains none of them.
TRAINABLE = {
    "vgg16": (5, 4, 8, 18, 18),
    "resnet50": (4, 32, 94, 168, 174),
    "inception_v3": (10, 32, 63, 271, 310),
    "densenet121": (4, 114, 286, 420, 426),
    "mobilenet_v2": (17, 11, 20, 150, 153),
}


@pytest.mark.parametrize("name", sorted(ZOO))
def test_finetune_trainable_depth_gives_the_tables_counts(name):
    side = ZOO[name][0]
    base = backbones.base_of(backbones.build_extractor(backbone_params(name, side=side), 0, None, (28, 28, 1)))
    blocks, *expected = TRAINABLE[name]
    assert len(backbones.FAMILIES[name].blocks) == blocks
    found = []
    for trainable in ("last_block", "blocks:2", f"blocks:{blocks}", "all", "head"):
        backbones.freeze(base, name, backbones.trained_blocks(name, trainable))
        found.append(sum(layer.trainable for layer in base.layers if not isinstance(layer, keras.layers.InputLayer)))
        if trainable.startswith("blocks:"):  # the first trainable layer starts a block
            first = next(layer for layer in base.layers if layer.trainable)
            assert re.match(backbones.FAMILIES[name].blocks[-int(trainable[7:])], first.name)
    assert found == [*expected, 0]
    with pytest.raises(UserError, match=rf"finetune.trainable = blocks:{blocks + 1}: {name} has {blocks} blocks: "
                                        rf"use blocks:1 to blocks:{blocks}, last_block, all or head"):
        backbones.trained_blocks(name, f"blocks:{blocks + 1}")


def test_head_trains_only_the_output_layer():
    from imgclf.models import finetune, heads

    head = heads.top((1, 1, 512), 3, units=8)
    model, frozen = finetune.build(backbone_params(), 0, None, head, (28, 28, 1), 3, "head")
    assert frozen == 18
    trainable = [weight.path for weight in model.trainable_weights]
    assert trainable == ["top/top_predictions/kernel", "top/top_predictions/bias"], trainable


@pytest.mark.parametrize("name", sorted(backbones.FAMILIES))
def test_preprocessing_layer_is_the_familys_preprocess_input(name):
    images = np.random.default_rng(0).uniform(0, 255, size=(2, 5, 5, 3)).astype("float32")
    expected = backbones.FAMILIES[name].preprocess_input(images.copy())
    np.testing.assert_allclose(backbones.preprocessing_layer(name)(images), expected, atol=1e-4)


def test_grayscale_is_made_rgb_and_resized_without_lambda_layers(tmp_path):
    extractor = backbones.build_extractor(backbone_params("mobilenet_v2"), 0, None, (16, 16, 1))
    names = [layer.name for layer in extractor.layers]
    assert "gray_to_rgb" in names and "resize" in names
    path = tmp_path / "extractor.keras"
    extractor.save(path)
    loaded = keras.models.load_model(path, safe_mode=True)
    images = np.random.default_rng(1).uniform(0, 255, size=(2, 16, 16, 1)).astype("float32")
    np.testing.assert_allclose(loaded.predict(images, verbose=0), extractor.predict(images, verbose=0), atol=1e-5)


def test_weights_none_is_the_same_network_in_every_build():
    first = backbones.build_backbone(backbone_params(), 7, None).get_weights()
    keras.layers.Dense(3).build((None, 4))  # draws from the global RNG in between
    second = backbones.build_backbone(backbone_params(), 7, None).get_weights()
    for one, other in zip(first, second, strict=True):
        np.testing.assert_array_equal(one, other)


def test_vgg16_flops_match_the_published_count():
    base = backbones.build_backbone(backbone_params(side=224), 0, None)
    # VGG16's 13 convolutions at 224x224: 15.35 G multiply-adds (2 FLOPs each).
    assert backbones.forward_flops(base) == pytest.approx(2 * 15.35e9, rel=0.01)


def test_too_small_input_names_the_key():
    with pytest.raises(UserError, match=r"backbone.input_size = \[32, 32\]: inception_v3 needs at least 75x75"):
        backbones.check(backbone_params("inception_v3", side=32))


def test_imagenet_offline_names_the_file_and_the_three_ways_out(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    monkeypatch.setattr(backbones, "weights_host_reachable", lambda timeout_s=3.0: False)
    with pytest.raises(UserError) as caught:
        backbones.resolve_weights(backbone_params(weights="imagenet"))
    assert str(caught.value) == (
        "ImageNet weights for vgg16 are not cached and the network is unreachable: place "
        "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5 in $KERAS_HOME/models, set "
        "backbone.weights to a file path, or set backbone.weights: none"
    )
    assert not list(tmp_path.iterdir()), "nothing written to the Keras cache"


def test_imagenet_uses_keras_cache_without_the_network(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    monkeypatch.setattr(backbones, "weights_host_reachable", lambda timeout_s=3.0: pytest.fail("network"))
    cached = tmp_path / "models" / "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_96_no_top.h5"
    cached.parent.mkdir()
    cached.write_bytes(b"")
    assert backbones.resolve_weights(backbone_params("mobilenet_v2", "imagenet", 96)) == str(cached)


def test_weights_file_round_trip_and_missing_file(tmp_path):
    source = backbones.build_backbone(backbone_params("mobilenet_v2"), 1, None)
    path = tmp_path / "mobilenet.weights.h5"
    source.save_weights(path)
    loaded = backbones.build_backbone(backbone_params("mobilenet_v2"), 2, backbones.resolve_weights(
        backbone_params("mobilenet_v2", str(path))))
    np.testing.assert_array_equal(loaded.get_weights()[0], source.get_weights()[0])
    with pytest.raises(UserError, match="backbone.weights = .*missing.h5: file not found"):
        backbones.resolve_weights(backbone_params(weights=str(tmp_path / "missing.h5")))


@pytest.mark.skipif(bool(tf.config.list_physical_devices("GPU")), reason="a GPU runs mixed_float16")
def test_mixed_float16_on_cpu_is_a_params_error():
    with pytest.raises(UserError, match="backbone.precision = mixed_float16: needs a GPU"):
        backbones.check_precision("mixed_float16")
