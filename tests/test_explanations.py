"""Library functions behind the Embeddings and Concept bottleneck pages' trust fixes (issue 10):
the colour palette, compound-concept parsing and AUROC, the tokenizer's truncation / unknown
characters, explanations against a baseline and "why not", intervention presets, the
misclassified list, the UMAP map, and the probe report's note on a falling intervention curve."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest
import torch

from conceptlab import palette
from conceptlab.analysis import compound_auroc, default_expression, parse_concept_expression
from conceptlab.cbm import PCBM, LaBo
from conceptlab.cbm.explanations import intervention_presets, misclassified, relative_contributions, why_not
from conceptlab.concepts import ConceptBank
from conceptlab.data import ATTRIBUTE_VALUES, ShapesWorld

pytestmark = pytest.mark.usefixtures("one_thread")

# -- palette -----------------------------------------------------------------------------------------


def test_palette_colours_are_distinct_and_named_values_keep_their_colour():
    assert palette.delta_e("#000000", "#FFFFFF") == pytest.approx(100.0, abs=0.1)
    closest = min(palette.delta_e(a, b) for a, b in itertools.combinations(palette.QUALITATIVE, 2))
    assert len(palette.QUALITATIVE) == 16 and closest >= 25  # no two categories near-identical
    classes = ShapesWorld("test", size=10, seed=0).class_names
    colours = palette.category_colors(classes)
    assert len(colours) == 12 and len(set(colours.values())) == 12
    assert min(palette.delta_e(a, b) for a, b in itertools.combinations(colours.values(), 2)) >= 25
    named = palette.category_colors(ATTRIBUTE_VALUES["color"])
    assert named["red"] == palette.NAMED_COLORS["red"] and named["blue"] == palette.NAMED_COLORS["blue"]
    # a chart coloured by shape never borrows a colour name's swatch for a shape
    shapes = palette.category_colors(ATTRIBUTE_VALUES["shape"])
    assert not set(shapes.values()) & set(palette.NAMED_COLORS.values())
    assert palette.delta_e(palette.FOR, palette.AGAINST) > 40


# -- compound concepts ---------------------------------------------------------------------------------

TABLE = pd.DataFrame({
    "color": ["red", "red", "blue", "red", "green", "blue"],
    "shape": ["circle", "square", "circle", "circle", "circle", "square"],
})
VALUES = {"color": ("red", "green", "blue"), "shape": ("circle", "square")}
SCORES = np.array([0.9, 0.4, 0.5, 0.3, 0.2, 0.6])


@pytest.mark.parametrize(
    ("text", "rows", "auroc"),
    [
        # positives 0.9, 0.3 against 0.4, 0.5, 0.2, 0.6: 0.9 beats 4, 0.3 beats 1 -> 5 / 8
        ("red AND circle", [0, 3], 5 / 8),
        ("red circle", [0, 3], 5 / 8),
        ("red OR blue", [0, 1, 2, 3, 5], 1.0),  # every positive above the one negative, 0.2
        # positives 0.4, 0.6 against 0.9, 0.5, 0.3, 0.2: 0.4 beats 2, 0.6 beats 3 -> 5 / 8
        ("NOT circle", [1, 5], 5 / 8),
        ("(red | blue) & ~shape:square", [0, 2, 3], 6 / 9),  # of 0.4, 0.2, 0.6: 0.9 beats 3, 0.5 beats 2, 0.3 beats 1
    ],
)
def test_compound_concepts_against_hand_computed_auroc(text, rows, auroc):
    expression = parse_concept_expression(text, VALUES)
    assert np.flatnonzero(expression.mask(TABLE)).tolist() == rows
    graded = compound_auroc(SCORES, expression, TABLE)
    assert graded["auroc"] == pytest.approx(auroc)
    assert graded["positives"] == len(rows) and graded["negatives"] == len(TABLE) - len(rows)


def test_compound_parser_round_trips_and_says_what_is_wrong():
    assert str(parse_concept_expression("(red OR blue) AND NOT circle", VALUES)) == "(red OR blue) AND NOT circle"
    assert str(parse_concept_expression("red or blue and circle", VALUES)) == "red OR (blue AND circle)"  # AND binds tighter, written out
    assert parse_concept_expression("red or blue and circle", VALUES).op == "or"
    assert default_expression("a red or blue circle", ATTRIBUTE_VALUES) == "(red OR blue) AND circle"
    assert default_expression("a red circle", ATTRIBUTE_VALUES) == "red AND circle"
    assert default_expression("a shape", ATTRIBUTE_VALUES) == ""
    for text, message in [
        ("red AND", "expected a value but found the end"),
        ("(red", "expected ')'"),
        ("red)", "without its '('"),
        ("NOT filled", "'filled' is not a ground-truth value"),
        ("", "empty"),
        ('"red', "unclosed quote"),
        ("size:red", "unknown attribute 'size'"),
        ("color:circle", "not a value of color"),
    ]:
        with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
            parse_concept_expression(text, VALUES)
    with pytest.raises(ValueError, match="write family:value"):
        parse_concept_expression("orange", {"color": ("orange",), "fruit": ("orange", "apple")})
    assert np.isnan(compound_auroc(SCORES, parse_concept_expression("red OR NOT red", VALUES), TABLE)["auroc"])  # one side only


# -- what the text encoder reads --------------------------------------------------------------------


def test_truncation_and_unknown_characters_match_what_open_clip_feeds_the_model():
    from open_clip.tokenizer import SimpleTokenizer

    from conceptlab.backbones import check_concept_texts

    tokenizer = SimpleTokenizer(context_length=16)
    long = "a small red circle with thin stripes on a beige background in the top left corner of a square image"
    short, odd = "a red circle", "a ☃ shape\x07"
    checks = check_concept_texts(tokenizer, [short, long, odd])
    assert [c.truncated for c in checks] == [False, True, False] and checks[0].problems == []
    assert checks[1].limit == 14 and checks[1].n_tokens == len(tokenizer.encode(long)) > 14
    fed = tokenizer([long])[0].tolist()  # what open_clip gives the model: SOT, 14 tokens, EOT
    assert fed[0] == tokenizer.sot_token_id and fed[15] == tokenizer.eot_token_id
    assert checks[1].kept == tokenizer.decode(fed[1:15]).strip()
    assert long.startswith(checks[1].kept) and "corner" not in checks[1].kept
    assert "14" in checks[1].problems[0] and checks[1].kept in checks[1].problems[0]
    assert checks[2].unknown == ("☃", "\x07")  # split into raw bytes; dropped by the cleaning
    assert check_concept_texts(tokenizer, ["café"])[0].unknown == ()  # é has a token of its own


# -- CBM explanations ----------------------------------------------------------------------------------

CLASSES = ["a", "b", "c"]


def _world(n: int, seed: int):
    """Three classes, each with one concept direction; embeddings = its direction + noise."""
    rng = np.random.default_rng(seed)
    directions = np.eye(6, dtype=np.float32)[:3]
    y = rng.integers(0, 3, n)
    X = 2 * directions[y] + 0.6 * rng.normal(size=(n, 6)).astype(np.float32) + 0.5
    return X.astype(np.float32), y, directions


@pytest.fixture(scope="module")
def models():
    X, y, directions = _world(600, 0)
    bank = ConceptBank.from_tensors(["is a", "is b", "is c"], torch.from_numpy(directions), "synthetic", class_links=[["a"], ["b"], ["c"]],
                                    provenance={"kind": "text"})
    pcbm = PCBM(bank, CLASSES).fit(X, y)
    labo = LaBo(bank, CLASSES, lr=0.05, epochs=30, val_every=5, batch_size=128, device="cpu").fit(X, y)
    return {"pcbm": pcbm, "labo": labo, "X": X, "y": y}


@pytest.mark.parametrize("name", ["pcbm", "labo"])
def test_relative_contributions_sum_to_the_logit_difference(models, name):
    model, x = models[name], models["X"][:1]
    logits = model.decision_function(x)[0]
    scores, W = model.transform(x)[0], model.coef_
    k = int(logits.argmax())
    plain = relative_contributions(model, x, against="zero")
    assert plain["contribution"].sum() == pytest.approx(logits[k], abs=1e-3)
    mean = relative_contributions(model, x, against="mean")
    assert mean["contribution"].sum() == pytest.approx(logits[k] - logits.mean(), abs=1e-3)
    by_concept = dict(zip(mean["concept"], mean["contribution"]))
    for j, concept in enumerate(model.concept_names_):  # score × (W[k] − the mean class's weight), by hand
        assert by_concept.get(concept, 0.0) == pytest.approx(scores[j] * (W[k, j] - W[:, j].mean()), abs=1e-4)
    assert mean["share"].abs().sum() == pytest.approx(1.0)
    other = CLASSES[int(np.argsort(-logits)[1])]
    contrast = why_not(model, x, other)
    assert contrast["contribution"].sum() == pytest.approx(logits[k] - logits[CLASSES.index(other)], abs=1e-3)
    assert contrast.attrs["against"] == other and contrast.attrs["class"] == CLASSES[k]
    with pytest.raises(ValueError, match="against itself"):
        why_not(model, x, CLASSES[k])


def test_labo_explains_against_the_mean_class_pcbm_against_zero(models):
    labo, pcbm, x = models["labo"], models["pcbm"], models["X"][:1]
    raw = labo.explain(x)
    assert (raw["contribution"] >= 0).all()  # LaBo's plain contributions: all positive, the complaint
    default = relative_contributions(labo, x)
    assert default.attrs["against"] == "mean" and (default["contribution"] < 0).any() and (default["contribution"] > 0).any()
    assert relative_contributions(pcbm, x).attrs["against"] == "zero"
    assert "LaBo" in labo.how_it_predicts and "margin" in pcbm.how_it_predicts and labo.score_units != pcbm.score_units


def test_intervention_presets_are_training_quantiles(models):
    model, X = models["pcbm"], models["X"]
    presets = intervention_presets(model, X, X[:1], quantiles=(0.1, 0.9))
    train = model.transform(X)
    np.testing.assert_allclose(presets["absent"], np.quantile(train, 0.1, axis=0), rtol=1e-6)
    np.testing.assert_allclose(presets["present"], np.quantile(train, 0.9, axis=0), rtol=1e-6)
    np.testing.assert_allclose(presets["predicted"], train[0], rtol=1e-6)
    assert (presets["absent"] < presets["present"]).all() and (presets["low"] <= presets["absent"]).all()
    # "present" for the image's own class concept keeps it; "absent" on every concept but another's moves it there
    x = X[:1]
    k = int(model.predict(x)[0])
    j = (k + 1) % 3
    moved = model.intervene(x, set={**{model.concept_names_[i]: presets["absent"].iloc[i] for i in range(3)},
                                    model.concept_names_[j]: presets["present"].iloc[j]})
    assert moved.predictions[0] == j
    with pytest.raises(ValueError, match="quantiles"):
        intervention_presets(model, X, x, quantiles=(0.9, 0.1))


def test_misclassified_lists_every_wrong_image_most_confident_first(models):
    model = models["pcbm"]
    X, y, _ = _world(300, 1)
    wrong = misclassified(model, X, y)
    predicted = model.predict(X)
    assert sorted(wrong["image"]) == np.flatnonzero(predicted != y).tolist() and len(wrong) > 0
    assert (wrong["confidence"].diff().dropna() <= 0).all()
    row = wrong.iloc[0]
    assert row["true"] == CLASSES[y[row["image"]]] and row["predicted"] == CLASSES[predicted[row["image"]]]
    assert row["confidence"] == pytest.approx(model.predict_proba(X[row["image"] : row["image"] + 1]).max())


# -- the probe report's falling curve -------------------------------------------------------------------


def test_a_falling_intervention_curve_is_explained_a_rising_one_is_not():
    from conceptlab.experiments.report import falling_curve_note

    def metrics(replace_all: float) -> dict:
        row = {"k=0": 0.958, "k=5": 0.9, "all": replace_all, "largest drop": max(0.0, 0.958 - replace_all)}
        rising = {"k=0": 0.958, "k=5": 0.96, "all": 0.969, "largest drop": 0.0}
        return {"interventions": {"kind": "score", "replace": {"summary": {"weight": row}}, "correct": {"summary": {"weight": rising}}}}

    note = falling_curve_note(metrics(0.827))
    assert "Why does accuracy fall" in note and "weight (replace): 0.958 at k = 0 → 0.827" in note and "correct" in note
    assert falling_curve_note(metrics(0.99)) == ""


# -- UMAP ---------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_umap_keeps_clusters_apart():
    pytest.importorskip("umap")
    from conceptlab.analysis import umap_2d

    rng = np.random.default_rng(0)
    centres = rng.normal(size=(3, 16)) * 4
    labels = np.repeat(np.arange(3), 40)
    X = (centres[labels] + rng.normal(size=(120, 16))).astype(np.float32)
    coords = umap_2d(X)
    assert coords.shape == (120, 2) and np.isfinite(coords).all()
    # every point's nearest neighbour on the map is from its own cluster
    distances = np.linalg.norm(coords[:, None] - coords[None], axis=-1) + np.eye(120) * 1e9
    assert (labels[distances.argmin(1)] == labels).mean() >= 0.98
    np.testing.assert_allclose(umap_2d(X), coords, atol=1e-5)  # seeded
