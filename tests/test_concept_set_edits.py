"""ConceptSetEdits: every edit says what it did, the log replays to the same set, round-trips
through JSON, and unknown classes are clear errors."""

from __future__ import annotations

import json

import pytest

from conceptlab.concepts import ConceptSet, ConceptSetEdits, UnknownNameError
from conceptlab.concepts.edits import EDIT_STATUSES, ConceptEdit

BASE = {"ruby disc": ["red circle", "red"], "jade block": ["green square"]}


def test_each_edit_reports_what_happened_and_changes_only_the_set_it_names():
    edits = ConceptSetEdits(BASE)
    assert edits.add("ruby disc", "  shiny   crimson ").status == "added"
    assert edits.current()["ruby disc"] == ["red circle", "red", "shiny crimson"]
    assert edits.add("ruby disc", "shiny crimson").status == "already present"
    assert edits.add("ruby disc", "   ").status == "empty name"
    result = edits.rename("ruby disc", "red", "scarlet")
    assert result.status == "renamed" and result.message == "Renamed “red” to “scarlet” in class ruby disc."
    assert edits.current()["ruby disc"] == ["red circle", "scarlet", "shiny crimson"]  # in place
    assert edits.rename("ruby disc", "red", "crimson").status == "not found"
    assert edits.rename("ruby disc", "scarlet", "red circle").status == "already present"
    assert edits.rename("ruby disc", "scarlet", "scarlet").status == "unchanged"
    assert edits.rename("ruby disc", "scarlet", "").status == "empty name"
    assert edits.remove("jade block", "green square").status == "removed"
    assert edits.remove("jade block", "green square").status == "not found"
    assert edits.current() == {"ruby disc": ["red circle", "scarlet", "shiny crimson"], "jade block": []}
    assert len(edits) == 3  # only the edits that changed something are logged
    assert {r for r in EDIT_STATUSES} >= {"added", "already present", "empty name", "renamed", "not found"}
    assert BASE == {"ruby disc": ["red circle", "red"], "jade block": ["green square"]}  # the base is untouched


def test_keep_only_and_restorable_follow_a_multiselect():
    edits = ConceptSetEdits(BASE)
    edits.add("ruby disc", "glossy")
    results = edits.keep_only("ruby disc", ["red", "glossy"])
    assert [(r.status, r.concept) for r in results] == [("removed", "red circle")]
    assert edits.restorable("ruby disc") == ["red circle"]
    results = edits.keep_only("ruby disc", ["red", "glossy", "red circle"])  # ticked back on
    assert [(r.status, r.concept) for r in results] == [("added", "red circle")]
    assert edits.restorable("ruby disc") == []
    assert sorted(edits.current()["ruby disc"]) == ["glossy", "red", "red circle"]


def test_unknown_class_is_a_clear_error():
    edits = ConceptSetEdits(BASE)
    with pytest.raises(UnknownNameError, match="unknown class 'ruby dsc'.*Did you mean: 'ruby disc'"):
        edits.add("ruby dsc", "red")
    with pytest.raises(KeyError):
        edits.rename("no class", "a", "b")
    with pytest.raises(UnknownNameError):
        ConceptSetEdits(BASE, [ConceptEdit("add", "violet tile", "purple")])
    with pytest.raises(ValueError, match="unknown edit 'drop'"):
        ConceptEdit("drop", "ruby disc", "red")


def test_json_round_trip_and_replay_on_another_set(tmp_path):
    edits = ConceptSetEdits(ConceptSet(BASE))
    edits.add("jade block", "emerald")
    edits.rename("ruby disc", "red", "scarlet")
    edits.remove("ruby disc", "red circle")
    path = edits.save(tmp_path / "edits.json")
    loaded = ConceptSetEdits.load(path)
    assert loaded.current() == edits.current() and loaded.edits == edits.edits and loaded.base == edits.base
    assert json.loads(path.read_text())["edits"][1] == {"op": "rename", "class": "ruby disc", "concept": "red", "new": "scarlet"}

    other = ConceptSet({"ruby disc": ["red", "round"], "jade block": ["emerald"]}, provenance={"source": "elsewhere"})
    replayed = edits.apply(other)
    assert replayed.to_dict() == {"ruby disc": ["scarlet", "round"], "jade block": ["emerald"]}  # "emerald" already there
    assert replayed.provenance["source"] == "elsewhere" and len(replayed.provenance["edits"]) == 3
    assert edits.apply().to_dict() == edits.current()

    (tmp_path / "bad.json").write_text(json.dumps({"format": "something else"}))
    with pytest.raises(ValueError, match="not a concept-set edit log"):
        ConceptSetEdits.load(tmp_path / "bad.json")
    (tmp_path / "bad2.json").write_text(json.dumps({"format": "conceptlab.ConceptSetEdits", "base": BASE, "edits": [{"op": "add"}]}))
    with pytest.raises(ValueError, match="needs 'op', 'class' and 'concept'"):
        ConceptSetEdits.load(tmp_path / "bad2.json")
