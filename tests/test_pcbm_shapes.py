"""PCBM and PCBM-h on the real thing: zoo:shapes-clip, the 25 ShapesWorld text concepts.

Bars, from runs on this project's CPU machine (ShapesWorld seed 0 and 1; train 1500, test and
shifted 500 here; the probes' 4000/1000 run in parentheses):

=====================================  ===============  ============  ======
figure                                 measured         (probe run)   bar
=====================================  ===============  ============  ======
mean concept AUROC on test             0.949 / 0.950    (0.952)       0.92
PCBM test accuracy                     0.938 / 0.946    (0.958)       0.90
linear probe (LogisticRegression)      0.936 / 0.950    (0.966)       0.90
PCBM - linear probe                    +0.002 / -0.004  (-0.008)      > -0.03
PCBM-h - PCBM (residual_lr 0.001)      0.000 / -0.004   (+0.010)      > -0.01
test - shifted accuracy of PCBM        0.41 / 0.38      (0.37)        > 0.25
suggested concepts                     the 4 backgrounds              the 4 backgrounds
editing gain on shifted (PCBM)         +0.086 / +0.084  (+0.078)      > 0.04
=====================================  ===============  ============  ======

PCBM-h is not reliably above PCBM here: PCBM is already within a point of the linear probe, so the
residual has little to add, and the gap is within the noise of 500 test images. With PCBM-h's
official residual_lr 0.01 it is lower still on some seeds (the residual's loss oscillates on
raw embeddings of norm ~45 and the last epoch is kept), see probes/shapes_pcbm_h.toml.

The splits are embedded into ``$CONCEPTLAB_HOME/store`` when it is set (scripts/run_tests.sh
points it at a test home, so a second run reads them back) and into a temporary store otherwise.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from conceptlab import zoo

pytestmark = pytest.mark.skipif(zoo.available()["shapes-clip"] is None, reason="zoo:shapes-clip is not built (conceptlab zoo build)")

SIZES = {"train": 1500, "test": 500, "shifted": 500}
BACKGROUNDS = {"background:white", "background:black", "background:gray", "background:beige"}


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    from conceptlab.backbones import load
    from conceptlab.concepts import text_concepts
    from conceptlab.data import ShapesWorld, shapesworld_text_prompts
    from conceptlab.store import ActivationStore

    home = os.environ.get("CONCEPTLAB_HOME")
    store = ActivationStore(os.path.join(home, "store") if home else tmp_path_factory.mktemp("pcbm-shapes-store"))
    backbone = load("zoo:shapes-clip", device="cpu")
    datasets = {split: ShapesWorld(split, size=size, seed=0) for split, size in SIZES.items()}
    previous = torch.get_num_threads()
    torch.set_num_threads(1)  # on a busy 2-core machine one thread embeds several times faster than two
    try:
        embeddings = {split: store.get_or_compute(backbone, d, progress=False, num_workers=0) for split, d in datasets.items()}
    finally:
        torch.set_num_threads(previous)
    prompts = shapesworld_text_prompts()
    bank = text_concepts(backbone, list(prompts), prompts=prompts)
    return {"datasets": datasets, "X": embeddings, "y": {s: d.labels for s, d in datasets.items()}, "bank": bank}


@pytest.fixture(scope="module")
def models(shapes):
    from conceptlab.baselines import linear_classifier
    from conceptlab.cbm import PCBM, PCBMHybrid
    from conceptlab.data import PCBM_H_SETTINGS

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        names = shapes["datasets"]["train"].class_names
        pcbm = PCBM(shapes["bank"], names).fit(shapes["X"]["train"], shapes["y"]["train"])
        hybrid = PCBMHybrid.from_pcbm(pcbm, **PCBM_H_SETTINGS).fit_residual(shapes["X"]["train"], shapes["y"]["train"])
    finally:
        torch.set_num_threads(previous)
    probe = linear_classifier(shapes["X"]["train"], shapes["y"]["train"])
    return {"pcbm": pcbm, "pcbm_h": hybrid, "linear": probe}


def accuracy(model, shapes, split) -> float:
    X = shapes["X"][split]
    X = X if hasattr(model, "bank") else X.numpy()  # a CBM takes tensors, sklearn arrays
    return float(np.mean(model.predict(X) == shapes["y"][split]))


def test_text_concepts_find_their_ground_truth(shapes):
    from conceptlab.metrics import concept_auroc

    test = shapes["datasets"]["test"]
    scores = (shapes["X"]["test"] @ shapes["bank"].vectors.T).numpy()  # PCBM's margin for unit text concepts
    aurocs = concept_auroc(scores, test.concepts, names=shapes["bank"].names, truth_names=test.concept_names)
    assert len(aurocs.dropna()) == 25
    assert aurocs.mean() >= 0.92, aurocs.sort_values().head()
    assert (aurocs > 0.65).all(), aurocs.sort_values().head()  # the weakest (fill:dotted) measured 0.73


def test_pcbm_and_pcbm_h_against_a_linear_baseline(shapes, models):
    pcbm, hybrid, linear = (accuracy(models[k], shapes, "test") for k in ("pcbm", "pcbm_h", "linear"))
    assert pcbm >= 0.90 and linear >= 0.90
    assert pcbm - linear > -0.03  # the bottleneck costs little on this world
    assert hybrid - pcbm > -0.01  # the residual does not hurt (and adds little, see the module docstring)
    assert accuracy(models["pcbm_h"], shapes, "train") >= accuracy(models["pcbm"], shapes, "train")
    assert pcbm - accuracy(models["pcbm"], shapes, "shifted") > 0.25  # the spurious background matters


def test_pruning_the_backgrounds_helps_on_the_shifted_split(shapes, models):
    from conceptlab.cbm.editing import editing_study

    splits = {s: (shapes["X"][s], shapes["y"][s]) for s in SIZES}
    study = editing_study(models["pcbm"], splits, suggest=4)
    assert set(study.suggested) == BACKGROUNDS, study.shift.head(6)
    assert study.gain("shifted") > 0.04, study.accuracy
    hybrid = editing_study(models["pcbm_h"], splits, concepts=sorted(BACKGROUNDS))
    assert hybrid.gain("shifted") > 0.04, hybrid.accuracy
