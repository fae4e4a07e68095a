"""convnet: the chapter's multi-layer convolutional network in low-level TensorFlow, on data/split."""

from imgclf.data import tfdata
from imgclf.models import convnet
from imgclf.pipeline import publish, stage
from imgclf.training import determinism, lowlevel


def run(params, tracked) -> None:
    settings = params.convnet
    determinism.seed_everything(params.seed)
    data = tfdata.load_split(params, settings.batch_size)
    model = convnet.ConvNet(data.input_shape, len(data.class_names), settings, params.seed)
    # The chapter's TensorBoard: layer summaries every step, the test set every few, the graph.
    fitted = lowlevel.train(model, data, settings, "convnet", test_every=settings.test_summary_steps, graph=True)
    publish.model_stage(
        "convnet", model.to_keras(data.input_shape), fitted, data.test, data.class_names, tracked, params,
        extra_metrics={"steps": settings.steps, "train_images": data.train_size},
    )


if __name__ == "__main__":
    stage.main(run)
