"""Hardening, class 1: sizes have documented caps, checked when an input is validated, and big
inputs cost what they need, not more.

- ShapesWorld draws rows on demand and gives exactly the rows, labels, captions and images of the
  eager sampler it replaced (a private copy of which is kept below as the reference);
- caps (``conceptlab.limits``) on sizes, resolution, concept counts and probe names, at and over
  the cap, with the limit in the message;
- the near-duplicate filter works in blocks (bounded memory) and agrees with the dense one.
"""

from __future__ import annotations

import hashlib
import json
import textwrap
import tracemalloc

import numpy as np
import pandas as pd
import pytest

import conceptlab.data.shapes_world as sw
from conceptlab.data import ShapesWorld
from conceptlab.limits import LIMITS, LimitError, check_limit, parse_json, read_regular_file

# -- the reference: the eager sampler as it was before rows were drawn on demand ---------------------


def _reference_seed(*parts) -> int:
    digest = hashlib.sha256("/".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "little")


def reference_sample(split, size, seed, label_noise=0.0, spurious_strength=0.9):
    """A verbatim copy of ShapesWorld._sample / _concept_matrix / _captions before the change."""
    version = "shapesworld-v1"
    rng = np.random.default_rng(_reference_seed(version, seed, split, size))
    rules = list(sw.CLASS_RULES.values())
    n_classes = len(rules)
    backgrounds = sw.ATTRIBUTE_VALUES["background"]
    rows, labels = [], []
    for _ in range(size):
        label = int(rng.integers(n_classes))
        rule, usual_background = rules[label]
        while True:
            row = {family: str(rng.choice(rule.get(family, values))) for family, values in sw.ATTRIBUTE_VALUES.items()}
            if all(not sw._matches(r, row) for k, (r, _) in enumerate(rules) if k != label):
                break
        others = [b for b in backgrounds if b != usual_background]
        if split == "shifted":
            row["background"] = str(rng.choice(others))
        elif rng.random() < spurious_strength:
            row["background"] = usual_background
        else:
            row["background"] = str(rng.choice(others))
        row["jitter_x"] = float(rng.uniform(-0.06, 0.06))
        row["jitter_y"] = float(rng.uniform(-0.06, 0.06))
        row["scale_jitter"] = float(rng.uniform(-0.08, 0.08))
        row["rotation"] = float(rng.uniform(-12.0, 12.0))
        row["color_jitter"] = int(rng.integers(0, 2**31 - 1))
        rows.append(row)
        labels.append(label)
    true_labels = np.asarray(labels, dtype=np.int64)
    noisy = true_labels.copy()
    if label_noise > 0:
        flip = rng.random(size) < label_noise
        shift = rng.integers(1, n_classes, size=size)
        noisy[flip] = (true_labels[flip] + shift[flip]) % n_classes
    class_names = list(sw.CLASS_RULES)
    frame = pd.DataFrame(rows)
    frame.insert(0, "label", noisy)
    frame.insert(1, "class_name", [class_names[k] for k in noisy])
    concept_names = [f"{f}:{v}" for f, values in sw.ATTRIBUTE_VALUES.items() for v in values]
    concepts = np.stack([frame[n.split(":")[0]].to_numpy() == n.split(":")[1] for n in concept_names], axis=1)
    crng = np.random.default_rng(_reference_seed(version, "captions", seed, split))
    families = list(sw.ATTRIBUTE_VALUES)
    captions = []
    for row in frame.to_dict("records"):
        chosen = [f for f in families if crng.random() < 0.6] or [families[crng.integers(6)]]
        captions.append(sw.caption_for(row, chosen))
    return frame, true_labels, noisy, concepts, captions


CONFIGS = [
    dict(split="train", size=300, seed=0),
    dict(split="train", size=4000, seed=0),  # the shipped probes' train split
    dict(split="test", size=2000, seed=0),
    dict(split="shifted", size=257, seed=3),
    dict(split="val", size=150, seed=1, label_noise=0.3),
    dict(split="train", size=120, seed=2, spurious_strength=0.0),
    dict(split="train", size=90, seed=5, spurious_strength=1.0, label_noise=0.05),
]


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: "-".join(f"{k}={v}" for k, v in c.items()))
def test_shapesworld_rows_are_exactly_the_eager_samplers(config, monkeypatch):
    monkeypatch.setattr(sw, "BLOCK_ROWS", 64)  # many blocks and checkpoints even for small splits
    monkeypatch.setattr(sw, "CACHED_BLOCKS", 2)  # and blocks dropped and redrawn
    frame, true_labels, noisy, concepts, captions = reference_sample(**config)
    ds = ShapesWorld(**config)
    # read out of order first: single rows, a late row, an early one again
    n = config["size"]
    for i in (n - 1, 0, n // 2, 65, 64, 63, -1):
        assert ds.row(i) == frame.iloc[i].to_dict()
        assert ds[i][1] == int(noisy[i])
    assert ds.caption(n - 1) == captions[-1]
    pd.testing.assert_frame_equal(ds.attributes, frame)
    assert np.array_equal(ds.labels, noisy) and ds.labels.dtype == np.int64
    assert np.array_equal(ds.true_labels, true_labels)
    assert np.array_equal(ds.concepts, concepts)
    assert ds.captions == captions
    assert ds.identity == f"shapesworld-v1:{config['split']}:n={n}:seed={config['seed']}:res=64:noise={config.get('label_noise', 0.0)}" \
        f":spurious={config.get('spurious_strength', 0.9)}"


def test_shapesworld_images_are_the_eager_samplers(monkeypatch):
    from conceptlab.data.rendering import render_image

    frame = reference_sample("test", 40, 0)[0]
    ds = ShapesWorld("test", size=40, seed=0)
    for i in (0, 7, 39):
        assert np.array_equal(np.asarray(ds[i][0]), np.asarray(render_image(frame.iloc[i].to_dict(), 64)))


def test_shapesworld_construction_draws_no_rows_and_a_row_draws_one_block(monkeypatch):
    calls = []
    original = sw._draw_rows
    monkeypatch.setattr(sw, "_draw_rows", lambda rng, count, config: calls.append(count) or original(rng, count, config))
    big = ShapesWorld("train", size=10**9)
    assert calls == [] and len(big) == 10**9
    assert big.identity.startswith("shapesworld-v1:train:n=1000000000:")
    big.row(5)
    big[17]
    assert calls == [sw.BLOCK_ROWS]  # one block drawn once, then served from memory


def test_shapesworld_pickles_without_its_drawn_rows():
    import pickle

    ds = ShapesWorld("val", size=50, seed=4)
    expected = ds.row(49)
    _ = ds.attributes
    clone = pickle.loads(pickle.dumps(ds))
    assert "attributes" not in clone.__dict__ and not clone._blocks
    assert clone.row(49) == expected


# -- caps ------------------------------------------------------------------------------------------


def test_caps_at_and_over_the_limit_name_the_limit(monkeypatch):
    assert check_limit("resolution", LIMITS["resolution"].value, "x") == 1024
    with pytest.raises(LimitError, match=r"ShapesWorld resolution is 1,025, over the limit of 1,024 pixels.*CONCEPTLAB_LIMIT_RESOLUTION"):
        ShapesWorld("test", size=4, resolution=1025)
    ShapesWorld("test", size=4, resolution=1024)  # at the cap: fine (and nothing drawn)
    with pytest.raises(LimitError, match=r"ShapesWorld size is 1,000,000,000,000, over the limit of 10,000,000,000 rows"):
        ShapesWorld("test", size=10**12)
    monkeypatch.setenv("CONCEPTLAB_LIMIT_RESOLUTION", "2048")
    assert ShapesWorld("test", size=4, resolution=2048).resolution == 2048
    monkeypatch.setenv("CONCEPTLAB_LIMIT_RESOLUTION", "lots")
    with pytest.raises(LimitError, match="must be a positive integer"):
        ShapesWorld("test", size=4, resolution=64)


def _probe(tmp_path, body: str, name="p.toml"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(body))
    return path


BASE = """
    [backbone]
    spec = "zoo:shapes-clip"
    [dataset]
    sizes = {{ train = {train}, test = 10, val = 10, shifted = 10 }}
    resolution = {resolution}
    [concepts]
    {concepts}
    [method]
    name = "pcbm"
    {params}
"""


def probe_text(train=10, resolution=64, concepts='source = "text"', params="", name=None):
    head = f'name = "{name}"\n' if name is not None else ""
    return head + BASE.format(train=train, resolution=resolution, concepts=concepts, params=params)


@pytest.mark.parametrize("field, at, over, message", [
    ("train", 10**6, 10**6 + 1, r"\[dataset.sizes\].*train.*1,000,001, over the limit of 1,000,000 images"),
    ("resolution", 1024, 1025, r"\[dataset\].*resolution is 1,025, over the limit of 1,024 pixels"),
])
def test_probe_validation_checks_sizes_against_the_caps(tmp_path, field, at, over, message):
    from conceptlab.experiments import ProbeConfigError, load_probe

    assert load_probe(_probe(tmp_path, probe_text(**{field: at}))).dataset is not None
    with pytest.raises(ProbeConfigError, match=message):
        load_probe(_probe(tmp_path, probe_text(**{field: over})))


def test_probe_validation_checks_the_name_length_and_characters(tmp_path):
    from conceptlab.experiments import ProbeConfigError, load_probe

    assert load_probe(_probe(tmp_path, probe_text(name="a" * 100))).name == "a" * 100
    with pytest.raises(ProbeConfigError, match=r"name is 101 characters.*over the limit of 100"):
        load_probe(_probe(tmp_path, probe_text(name="a" * 101)))
    with pytest.raises(ProbeConfigError, match="control character"):
        load_probe(_probe(tmp_path, probe_text(name="bad\\u0007name")))


def test_probe_validation_checks_paths_and_concept_counts(tmp_path, monkeypatch):
    from conceptlab.experiments import ProbeConfigError, load_probe

    with pytest.raises(ProbeConfigError, match=r"\[concepts\].*path.*no such file.*missing\.json"):
        load_probe(_probe(tmp_path, probe_text(concepts='source = "concept_set"\npath = "missing.json"')))
    small = {f"class {k}": [f"concept {k}-{j}" for j in range(5)] for k in range(4)}
    (tmp_path / "small.json").write_text(json.dumps(small))
    assert load_probe(_probe(tmp_path, probe_text(concepts='source = "concept_set"\npath = "small.json"'))).concepts["path"] == "small.json"
    monkeypatch.setenv("CONCEPTLAB_LIMIT_CONCEPTS", "19")
    with pytest.raises(ProbeConfigError, match=r"small\.json holds 20 concepts, over the limit of 19"):
        load_probe(_probe(tmp_path, probe_text(concepts='source = "concept_set"\npath = "small.json"')))


@pytest.mark.parametrize("params, message", [
    ("params = { lam = \"big\" }", r"key 'lam' must be a number, got a string 'big'"),
    ("params = { lam = true }", r"key 'lam' must be a number, got a boolean"),
    ("params = { device = 3 }", r"key 'device' must be a string, got an integer"),
    ("params = { class_weight = 3 }", None),  # an unknown key is still caught as before
])
def test_probe_validation_types_parameters_whose_default_is_none(tmp_path, params, message):
    from conceptlab.experiments import ProbeConfigError, load_probe

    with pytest.raises(ProbeConfigError, match=message or "unknown key"):
        load_probe(_probe(tmp_path, probe_text(params=params)))


def test_probe_validation_accepts_typed_optional_parameters(tmp_path):
    from conceptlab.experiments import load_probe

    config = load_probe(_probe(tmp_path, probe_text(params="params = { lam = 1e-3, device = \"cpu\" }")))
    assert config.method["params"] == {"lam": 1e-3, "device": "cpu"}
    config = load_probe(_probe(tmp_path, probe_text(params="params = { lam = 1 }")))
    assert config.method["params"] == {"lam": 1.0}


# -- readers of files conceptlab did not write ------------------------------------------------------


def test_read_regular_file_refuses_fifos_folders_and_oversized_files(tmp_path):
    import os

    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(ValueError, match="not a regular file"):
        read_regular_file(fifo)  # returns at once: no writer is waited for
    with pytest.raises(ValueError, match="not a regular file"):
        read_regular_file(tmp_path)
    big = tmp_path / "big.json"
    big.write_bytes(b" " * 101)
    with pytest.raises(LimitError, match="101 bytes, over the limit of 100 bytes"):
        read_regular_file(big, max_bytes=100)
    assert read_regular_file(big, max_bytes=101) == b" " * 101


def test_parse_json_turns_deep_nesting_into_a_value_error():
    with pytest.raises(ValueError, match="nested too deeply"):
        parse_json("[" * 100_000 + "]" * 100_000, "manifest")
    with pytest.raises(ValueError, match="not valid JSON"):
        parse_json(b"{", "manifest")
    with pytest.raises(ValueError, match="not UTF-8"):
        parse_json(b"\xff\xfe", "manifest")


# -- the near-duplicate filter in blocks ------------------------------------------------------------


class HashEncoder:
    """Deterministic unit vectors per text, with planted near-duplicates ("x" and "x!")."""

    def __init__(self, dim=16):
        self.dim = dim

    def encode(self, texts):
        out = []
        for t in texts:
            base = t.rstrip("!")
            rng = np.random.default_rng(int(hashlib.sha256(base.encode()).hexdigest()[:8], 16))
            v = rng.normal(size=self.dim)
            if t.endswith("!"):
                v = v + 0.15 * np.random.default_rng(len(t)).normal(size=self.dim)
            out.append(v / np.linalg.norm(v))
        return np.asarray(out, dtype=np.float32)


@pytest.mark.parametrize("n, block", [(50, 7), (203, 64), (64, 64)])
def test_blockwise_near_duplicates_agree_with_the_dense_filter(n, block, monkeypatch):
    import conceptlab.concepts.filters as filters

    concepts = [f"c{k}" + ("!" if k % 5 == 0 else "") for k in range(n)] + [f"c{k}" for k in range(0, n, 5)]
    dense = filters.filter_near_duplicates(concepts, cutoff=0.9, sentence_encoder=HashEncoder())
    monkeypatch.setattr(filters, "DENSE_PAIRS_MAX", 0)  # force the blockwise path
    monkeypatch.setattr(filters, "SIMILARITY_BLOCK_BYTES", block * len(set(concepts)) * 8)
    blockwise = filters.filter_near_duplicates(concepts, cutoff=0.9, sentence_encoder=HashEncoder())
    assert dense.removed and blockwise.kept == dense.kept
    assert [(r["concept"], r["other"]) for r in blockwise.removed] == [(r["concept"], r["other"]) for r in dense.removed]
    for a, b in zip(blockwise.removed, dense.removed):
        assert a["value"] == pytest.approx(b["value"], abs=1e-6)


def test_blockwise_near_duplicates_memory_is_bounded():
    """N = 4 000 concepts: the dense filter's N×N float64 matrix alone would be 128 MB."""
    import conceptlab.concepts.filters as filters

    n = 4000
    encoder = HashEncoder(dim=32)
    concepts = [f"c{k}" for k in range(n)]
    encoder.encode(concepts)  # warm the module
    tracemalloc.start()
    result = filters.filter_near_duplicates(concepts, cutoff=0.99, sentence_encoder=encoder)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert len(result.kept) == n
    assert peak < filters.SIMILARITY_BLOCK_BYTES + 4 * n * 32 * 8 + (4 << 20), peak  # a block, the embeddings, slack
