"""The linear SVM on bottleneck features, reported beside the top classifier (the chapter's advice)."""

from __future__ import annotations

import numpy as np
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import LinearSVC

MAX_ITERATIONS = 10_000


def accuracy(
    train_features: np.ndarray,
    train_labels: np.ndarray,
    test_features: np.ndarray,
    test_labels: np.ndarray,
    c: float,
    seed: int,
) -> float:
    """Test accuracy of a linear SVM (LinearSVC, C=c) on standardized, flattened features."""
    model = make_pipeline(StandardScaler(), LinearSVC(C=c, dual="auto", random_state=seed, max_iter=MAX_ITERATIONS))
    model.fit(train_features.reshape(len(train_features), -1), train_labels)
    predicted = model.predict(test_features.reshape(len(test_features), -1))
    return float(np.mean(predicted == test_labels))
