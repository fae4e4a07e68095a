"""The repo's own params.yaml is valid and resolves for the offline default."""

from imgclf import params

from helpers.workspace import REPO


def test_repo_params_load_and_resolve():
    config = params.load(REPO / "params.yaml")
    assert config.data.source == "mnist-sample"
    assert config.image.size == (28, 28)
    assert config.image.color_mode == "grayscale"
    assert config.augmentation.horizontal_flip is False
    assert config.backbone.input_size == (32, 32)
