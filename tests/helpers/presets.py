"""Params objects tests build models and augmentations from: the chapter's CNN, an augmentation that does nothing."""

from __future__ import annotations

from imgclf.params import AugmentationParams, CnnParams

# The chapter's simple CNN, exactly as the chapter builds it.
CHAPTER = CnnParams(architecture="simple_cnn", layout="chapter", filters=(64, 128), dense_units=1024, dropout=0.3,
                    precision="float32", local_response_normalization=False)
# Augmentation that changes nothing: every transform off.
NONE = AugmentationParams(horizontal_flip=False, zoom=0.0, shear=0.0, rotation=0.0, translation=0.0, vertical_flip=False,
                          crop=1.0, channel_shift=0.0, normalization=False, whitening=False, whitening_epsilon=0.1)
