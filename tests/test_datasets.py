"""Your own data: dataset specs (folder:, csv:, hf:, shapesworld:), round trips through the exported
layouts, lazy loading, identities that follow the files, and clear errors for bad inputs."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conceptlab import zoo
from conceptlab.data import (
    CSVDataset,
    DatasetError,
    FolderDataset,
    ShapesWorld,
    export_dataset,
    load,
    parse_dataset_spec,
    split_dataset,
)

ROOT = Path(__file__).resolve().parents[1]
needs_zoo = pytest.mark.skipif(zoo.available()["shapes-clip"] is None, reason="zoo:shapes-clip is not built")


@pytest.fixture(scope="module")
def world():
    return ShapesWorld("test", size=60, seed=3)


@pytest.fixture(scope="module")
def exported(world, tmp_path_factory):
    root = tmp_path_factory.mktemp("export")
    return {fmt: export_dataset(world, root / fmt, format=fmt, progress=False) for fmt in ("folder", "csv")}


def _row_of(path: Path) -> int:
    return int(path.stem)


def test_export_round_trips_images_labels_and_concepts(world, exported):
    folder = load(f"folder:{exported['folder']}")
    table = load(f"csv:{exported['csv'] / 'labels.csv'}")
    assert isinstance(folder, FolderDataset) and isinstance(table, CSVDataset)
    assert len(folder) == len(table) == len(world)
    # the folder reads class-major (ImageFolder order); each file names its ShapesWorld row
    for i in (0, 17, len(folder) - 1):
        image, label = folder[i]
        row = _row_of(folder.paths[i])
        original, original_label = world[row]
        assert np.array_equal(np.asarray(image), np.asarray(original))  # PNG is lossless
        assert folder.class_names[label] == world.class_names[original_label]
    # the table keeps the row order, and its concept columns are ShapesWorld's ground truth
    for i in (0, 31):
        image, label = table[i]
        assert np.array_equal(np.asarray(image), np.asarray(world[i][0]))
        assert table.class_names[label] == world.class_names[world.labels[i]]
    assert table.concept_names == world.concept_names
    assert np.array_equal(table.concepts, world.concepts) and table.concept_known.all()


@needs_zoo
def test_exported_data_give_the_same_embeddings_accuracy_and_concept_auroc(world, exported, tmp_path):
    from conceptlab.backbones import load as load_backbone
    from conceptlab.cbm import PCBM
    from conceptlab.concepts import text_concepts
    from conceptlab.data import shapesworld_text_prompts
    from conceptlab.metrics import concept_auroc
    from conceptlab.store import ActivationStore

    backbone = load_backbone("zoo:shapes-clip", device="cpu")
    store = ActivationStore(root=tmp_path / "store")
    train = ShapesWorld("train", size=300, seed=3)
    X_train = store.get_or_compute(backbone, train, progress=False)
    prompts = shapesworld_text_prompts()
    model = PCBM(text_concepts(backbone, list(prompts), prompts=prompts), train.class_names).fit(X_train, train.labels)

    reference = store.get_or_compute(backbone, world, progress=False)
    folder = load(f"folder:{exported['folder']}")
    table = load(f"csv:{exported['csv'] / 'labels.csv'}")
    X_folder = store.get_or_compute(backbone, folder, progress=False)
    X_table = store.get_or_compute(backbone, table, progress=False)
    order = [_row_of(p) for p in folder.paths]
    assert np.array_equal(X_folder.numpy(), reference.numpy()[order])
    assert np.array_equal(X_table.numpy(), reference.numpy())

    def named(ds):
        return [ds.class_names[k] for k in ds.labels]

    accuracy = model.score(reference, named(world))
    assert model.score(X_folder, named(folder)) == accuracy and model.score(X_table, named(table)) == accuracy
    auroc = concept_auroc(model.transform(reference), world.concepts, names=model.concept_names_, truth_names=world.concept_names)
    auroc_table = concept_auroc(model.transform(X_table), table.concepts, names=model.concept_names_, truth_names=table.concept_names)
    assert auroc.equals(auroc_table) and auroc.mean() > 0.8


def test_identity_follows_the_files(exported, tmp_path):
    copy = Path(shutil.copytree(exported["folder"], tmp_path / "copy"))
    first = FolderDataset(copy).identity
    assert FolderDataset(copy).identity == first  # stable
    victim = sorted(copy.rglob("*.png"))[0]
    Image.new("RGB", (64, 64), "white").save(victim)
    os.utime(victim, ns=(1, 1))
    assert FolderDataset(copy).identity != first
    assert FolderDataset(copy, content_hash=True).identity != FolderDataset(exported["folder"], content_hash=True).identity


def test_folder_is_lazy(exported, monkeypatch):
    opened = []
    real_open = Image.open
    monkeypatch.setattr(Image, "open", lambda *a, **k: opened.append(a[0]) or real_open(*a, **k))
    dataset = FolderDataset(exported["folder"])
    assert opened == [] and len(dataset) == 60
    dataset[5]
    assert len(opened) == 1


def _two_class_folder(root: Path, n: int = 3) -> Path:
    for name, colour in (("cats", "red"), ("dogs", "blue")):
        (root / name).mkdir(parents=True)
        for i in range(n):
            Image.new("RGB", (8, 8), colour).save(root / name / f"{i}.png")
    return root


def test_bad_folders_are_clear_errors(tmp_path):
    with pytest.raises(DatasetError, match="no such folder"):
        load(f"folder:{tmp_path / 'nowhere'}")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="no class sub-folders"):
        load(f"folder:{tmp_path / 'empty'}")
    one = tmp_path / "one"
    (one / "only").mkdir(parents=True)
    Image.new("RGB", (8, 8)).save(one / "only" / "a.png")
    with pytest.raises(DatasetError, match="at least two classes"):
        load(f"folder:{one}")
    # a corrupt image among good ones: fail fast naming row and file, or skip with a report
    root = _two_class_folder(tmp_path / "pets")
    (root / "dogs" / "broken.png").write_bytes(b"not a png at all")
    strict = load(f"folder:{root}")
    row = [p.name for p in strict.paths].index("broken.png")
    with pytest.raises(DatasetError, match=rf"row {row}: cannot read image .*broken\.png"):
        strict[row]
    lenient = load(f"folder:{root}?on_error=skip")
    assert len(lenient) == 6 and [s["file"].endswith("broken.png") for s in lenient.skipped] == [True]


def test_bad_tables_are_clear_errors(tmp_path):
    root = _two_class_folder(tmp_path / "pets")
    table = tmp_path / "pets.csv"
    table.write_text("path,kind,furry\npets/cats/0.png,cat,1\npets/dogs/0.png,dog,\n")
    with pytest.raises(DatasetError, match=r"no image column 'image'.*\?image=NAME"):
        load(f"csv:{table}")
    dataset = load(f"csv:{table}?image=path&label=kind")
    assert dataset.class_names == ["cat", "dog"] and dataset.concept_names == ["furry"]
    assert dataset.concepts[:, 0].tolist() == [True, False] and dataset.concept_known[:, 0].tolist() == [True, False]
    with pytest.raises(DatasetError, match=r"no concept column\(s\) 'wet'"):
        load(f"csv:{table}?image=path&label=kind&concepts=wet")
    table.write_text("image,label\npets/cats/0.png,cat\npets/dogs/0.png,1\n")
    with pytest.raises(DatasetError, match="mixes integer labels"):
        load(f"csv:{table}")
    table.write_text("image,label\npets/cats/0.png,cat\npets/dogs/9.png,dog\n")
    with pytest.raises(DatasetError, match=r"row 3: image file .*9\.png does not exist"):
        load(f"csv:{table}")
    table.write_text("image,label,furry\npets/cats/0.png,cat,maybe\npets/dogs/0.png,dog,0\n")
    with pytest.raises(DatasetError, match=r"row 2, column 'furry': 'maybe' is not 0/1"):
        load(f"csv:{table}")
    assert root.exists()


def test_specs_name_kinds_and_options():
    assert parse_dataset_spec("folder:/data/a b") == ("folder", "/data/a b", {})
    assert parse_dataset_spec("shapesworld:val?size=10&seed=2") == ("shapesworld", "val", {"size": "10", "seed": "2"})
    with pytest.raises(DatasetError, match=r"(?s)unknown dataset kind 's3'.*folder:PATH"):
        load("s3://bucket/images")
    with pytest.raises(DatasetError, match="unknown option"):
        load("shapesworld:test?colour=red")
    dataset = load("shapesworld:val?size=10&seed=2")
    assert dataset.identity == ShapesWorld("val", size=10, seed=2).identity


def test_hf_saved_dataset_reads_offline(tmp_path, world):
    datasets = pytest.importorskip("datasets")
    features = datasets.Features({"img": datasets.Image(), "kind": datasets.ClassLabel(names=list(world.class_names))})
    rows = [world[i] for i in range(8)]
    data = datasets.Dataset.from_dict({"img": [r[0] for r in rows], "kind": [r[1] for r in rows]}, features=features)
    data.save_to_disk(str(tmp_path / "saved"))
    loaded = load(f"hf:{tmp_path / 'saved'}")
    assert loaded.class_names == world.class_names and loaded.labels.tolist() == world.labels[:8].tolist()
    assert np.array_equal(np.asarray(loaded[3][0]), np.asarray(world[3][0]))
    with pytest.raises(DatasetError, match="not a dataset saved with save_to_disk"):
        load(f"hf:{tmp_path}")


def test_split_is_stratified_disjoint_and_keys_the_base(world, tiny_backbone, tmp_path):
    from conceptlab.store import ActivationStore

    parts = split_dataset(world, {"train": 0.5, "test": 0.3}, seed=1)
    train, test = parts["train"], parts["test"]
    assert not set(train.indices) & set(test.indices) and len(train) + len(test) <= len(world)
    assert np.array_equal(train.labels, world.labels[train.indices]) and train.concept_names == world.concept_names
    assert set(np.unique(train.labels)) == set(np.unique(world.labels))
    assert split_dataset(world, {"train": 0.5, "test": 0.3}, seed=1)["train"].indices == train.indices  # seeded
    store = ActivationStore(root=tmp_path / "store")
    assert store.key(tiny_backbone, train) == store.key(tiny_backbone, world, indices=train.indices)  # one cache with the base
    with pytest.raises(DatasetError, match="sum to at most 1"):
        split_dataset(world, {"train": 0.9, "test": 0.3})


@needs_zoo
def test_a_probe_and_the_cli_run_on_a_folder(exported, tmp_path):
    env = {**os.environ, "CONCEPTLAB_HOME": str(tmp_path / "home"), "HF_HUB_OFFLINE": "1"}
    probe = tmp_path / "folder_pcbm.toml"
    probe.write_text(textwrap.dedent(f"""
        name = "folder_pcbm"
        [backbone]
        spec = "zoo:shapes-clip"
        [dataset]
        spec = "folder:{exported['folder']}"
        fractions = {{ train = 0.7, test = 0.3 }}
        [concepts]
        source = "text"
        [method]
        name = "pcbm"
    """))
    run = subprocess.run([sys.executable, "-m", "conceptlab.cli", "probe", "run", str(probe), "--out", str(tmp_path / "out"), "--quiet"],
                         capture_output=True, text=True, env=env, timeout=300)
    assert run.returncode == 0, run.stderr
    import json

    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert metrics["sizes"] == {"train": 42, "test": 18} and 0.0 <= metrics["accuracy"]["test"] <= 1.0
    assert "editing" not in metrics and "concept_auroc" not in metrics  # no shifted split, no concept annotations
    embed = subprocess.run([sys.executable, "-m", "conceptlab.cli", "embed", "--data", f"folder:{exported['folder']}", "--dry-run"],
                           capture_output=True, text=True, env=env, timeout=300)
    assert embed.returncode == 0 and f"folder:{Path(exported['folder']).resolve()}" in embed.stdout, embed.stderr


@needs_zoo
def test_concepts_from_annotations_folders_and_a_phrase_file(world, exported, tmp_path):
    from conceptlab.backbones import load as load_backbone
    from conceptlab.concepts import cav_from_folders, cavs_from_annotations, read_phrases, text_bank_from_file
    from conceptlab.store import ActivationStore

    backbone = load_backbone("zoo:shapes-clip", device="cpu")
    table = load(f"csv:{exported['csv'] / 'labels.csv'}")
    X = ActivationStore(root=tmp_path / "store").get_or_compute(backbone, table, progress=False).numpy()
    bank = cavs_from_annotations(X, table, ["background:white", "size:large"], n_samples=5, heldout=0.3, seed=0)
    assert bank.names == ["background:white", "size:large"]
    assert all(c.metrics["heldout_auroc"] > 0.8 and c.metrics["n_heldout"] >= 8 for c in bank)  # graded on rows it never saw
    with pytest.raises(ValueError, match="needs more than 50"):
        cavs_from_annotations(X, table, ["size:large"], n_samples=50)
    # two "folders": the white-background images against the rest
    white = table.concepts[:, table.concept_names.index("background:white")]
    cav = cav_from_folders(X[white], X[~white], "white background", n_samples=5, seed=0)
    assert cav.names == ["white background"] and cav[0].metrics["heldout_auroc"] > 0.8
    phrases = tmp_path / "concepts.txt"
    phrases.write_text("# my concepts\na red shape\n\na circle   # round\na red shape\n")
    assert read_phrases(phrases) == ["a red shape", "a circle"]
    text = text_bank_from_file(backbone, phrases)
    assert text.names == ["a red shape", "a circle"] and text.provenance["phrases_file"] == str(phrases)
