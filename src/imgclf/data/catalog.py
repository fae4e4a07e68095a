"""What each data source is: its native image size, colour mode, class names. Pure data, no I/O."""

from __future__ import annotations

from dataclasses import dataclass

CIFAR10_CLASSES = (
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
)
# keras.datasets.cifar100 (label_mode="fine") class order.
CIFAR100_CLASSES = (
    "apple", "aquarium_fish", "baby", "bear", "beaver", "bed", "bee", "beetle", "bicycle", "bottle",
    "bowl", "boy", "bridge", "bus", "butterfly", "camel", "can", "castle", "caterpillar", "cattle",
    "chair", "chimpanzee", "clock", "cloud", "cockroach", "couch", "crab", "crocodile", "cup",
    "dinosaur", "dolphin", "elephant", "flatfish", "forest", "fox", "girl", "hamster", "house",
    "kangaroo", "keyboard", "lamp", "lawn_mower", "leopard", "lion", "lizard", "man", "maple_tree",
    "motorcycle", "mountain", "mouse", "mushroom", "oak_tree", "orange", "orchid", "otter",
    "palm_tree", "pear", "pickup_truck", "pine_tree", "plain", "plate", "poppy", "porcupine",
    "possum", "rabbit", "raccoon", "ray", "road", "rocket", "rose", "sea", "seal", "shark", "shrew",
    "skunk", "skyscraper", "snail", "snake", "spider", "squirrel", "streetcar", "sunflower",
    "sweet_pepper", "table", "tank", "telephone", "television", "tiger", "tractor", "train",
    "trout", "tulip", "turtle", "wardrobe", "whale", "willow_tree", "wolf", "woman", "worm",
)
# keras.datasets.cifar100 (label_mode="coarse"): the 20 superclasses, in label order.
CIFAR100_COARSE_CLASSES = (
    "aquatic_mammals", "fish", "flowers", "food_containers", "fruit_and_vegetables",
    "household_electrical_devices", "household_furniture", "insects", "large_carnivores",
    "large_man-made_outdoor_things", "large_natural_outdoor_scenes", "large_omnivores_and_herbivores",
    "medium_mammals", "non-insect_invertebrates", "people", "reptiles", "small_mammals", "trees",
    "vehicles_1", "vehicles_2",
)
# The sources with a coarse labelling beside their own (data.label_mode: coarse).
COARSE_CLASSES = {"cifar100": CIFAR100_COARSE_CLASSES}
FASHION_CLASSES = (
    "t-shirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag",
    "ankle-boot",
)
DIGITS = tuple(str(digit) for digit in range(10))


@dataclass(frozen=True)
class SourceInfo:
    """A data source's facts: where it comes from and what its images look like."""

    name: str
    kind: str  # "arrays" (numpy arrays, written as PNG by split), "archive" (dogs-vs-cats' zip of
    #            JPEGs) or "images" (your own: a folder, an archive of one, or a labels CSV)
    image_size: tuple[int, int]  # native (height, width); photos: the chapter's 150x150
    color_mode: str  # "grayscale" | "rgb"
    photo: bool  # natural photos: flips are label-preserving, the CNN needs the photo layout
    class_names: tuple[str, ...]  # empty for your own images: the folder names or the CSV's labels


SOURCES: dict[str, SourceInfo] = {
    info.name: info
    for info in (
        SourceInfo("mnist-sample", "arrays", (28, 28), "grayscale", False, DIGITS),
        SourceInfo("mnist", "arrays", (28, 28), "grayscale", False, DIGITS),
        SourceInfo("fashion-mnist", "arrays", (28, 28), "grayscale", False, FASHION_CLASSES),
        SourceInfo("cifar10", "arrays", (32, 32), "rgb", True, CIFAR10_CLASSES),
        SourceInfo("cifar100", "arrays", (32, 32), "rgb", True, CIFAR100_CLASSES),
        SourceInfo("dogs-vs-cats", "archive", (150, 150), "rgb", True, ("cat", "dog")),
        SourceInfo("folder", "images", (150, 150), "rgb", True, ()),
        SourceInfo("csv", "images", (150, 150), "rgb", True, ()),
    )
}
