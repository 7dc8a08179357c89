"""Plain baselines the methods are compared with."""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["linear_classifier"]


def linear_classifier(train_x: Any, train_y: Any, seed: int = 0):
    """sklearn ``LogisticRegression`` (L2, C=1, lbfgs) on the raw embeddings: the accuracy a
    concept bottleneck is measured against.

    BLAS is held to one thread: on a busy 2-core machine lbfgs with several BLAS threads ran far
    slower and gives the same model.
    """
    from sklearn.linear_model import LogisticRegression
    from threadpoolctl import threadpool_limits

    X = train_x.numpy() if hasattr(train_x, "numpy") else np.asarray(train_x)
    with threadpool_limits(1):
        return LogisticRegression(max_iter=5000, random_state=seed).fit(X, np.asarray(train_y))
