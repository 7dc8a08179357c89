"""conceptlab.analysis: the zero-shot scores, rankings, filters and map the Embeddings page shows."""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from conceptlab.analysis import family_of_text, filter_mask, ground_truth_auroc, pca_2d, rank_indices, zero_shot_scores
from conceptlab.data import ATTRIBUTE_VALUES


def test_ground_truth_matching_and_auroc():
    assert family_of_text("A Red shape", ATTRIBUTE_VALUES) == "color"
    assert family_of_text("something at the top left", ATTRIBUTE_VALUES) == "position"
    assert family_of_text("a cat", ATTRIBUTE_VALUES) is None
    frame = pd.DataFrame({family: [values[0], values[1]] * 2 for family, values in ATTRIBUTE_VALUES.items()})
    scores = np.array([0.9, 0.1, 0.8, 0.2])
    assert ground_truth_auroc("a red circle", scores, frame, ATTRIBUTE_VALUES) == {"shape:circle": 1.0, "color:red": 1.0}
    assert ground_truth_auroc("a cat", scores, frame, ATTRIBUTE_VALUES) == {}
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"color": rng.choice(["red", "blue"], 50), "shape": ["circle"] * 50})
    noisy = rng.normal(size=50)
    result = ground_truth_auroc("a red circle", noisy, frame, {"color": ["red", "blue"], "shape": ["circle"]})
    assert result == {"color:red": roc_auc_score(frame["color"] == "red", noisy)}  # constant truth (circle) is left out


def test_rank_filter_scores_and_map():
    scores = np.array([0.5, 0.9, 0.1, 0.7, 0.3])
    top, bottom = rank_indices(scores, np.array([0, 2, 3, 4]), 2)
    assert list(top) == [3, 0] and list(bottom) == [2, 4]
    frame = pd.DataFrame({"color": ["red", "blue", "red"], "shape": ["circle", "circle", "star"]})
    assert list(filter_mask(frame, {"color": ["red"], "shape": []})) == [True, False, True]
    coords, variance = pca_2d(np.random.default_rng(0).normal(size=(10, 6)))
    assert coords.shape == (10, 2) and variance[0] >= variance[1]
    assert pca_2d(np.ones((1, 4)))[0].shape == (1, 2)
    X = np.array([[3.0, 4.0], [0.0, -2.0]])
    np.testing.assert_allclose(zero_shot_scores(X, np.array([0.0, 5.0])), [0.8, -1.0], rtol=1e-6)
