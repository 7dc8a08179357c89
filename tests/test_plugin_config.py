"""The shared TOML rules of the probe-kind plug-ins (conceptlab.experiments.plugin_config)."""

from __future__ import annotations

import pytest

from conceptlab.experiments import ProbeConfigError
from conceptlab.experiments.plugin_config import check_choice, check_spec, read_header, read_section

DEFAULTS = {"lr": 0.1, "steps": 10, "flag": False, "scales": [0.5, 1.0], "names": ["a"], "spec": "zoo:facts-gpt2"}


def test_read_section_fills_defaults_and_converts_ints_to_floats():
    out = read_section({"s": {"lr": 1, "scales": [1, 2.5]}}, "s", DEFAULTS, "p.toml")
    assert out == {**DEFAULTS, "lr": 1.0, "scales": [1.0, 2.5]}
    assert isinstance(out["lr"], float) and all(isinstance(v, float) for v in out["scales"])


@pytest.mark.parametrize(("given", "message"), [
    ({"steps": True}, "steps = True has the wrong type"),       # a bool is not a number
    ({"flag": 1}, "flag = 1 has the wrong type"),
    ({"scales": []}, "scales = [] has the wrong type"),          # lists are never empty
    ({"names": [1]}, "names = [1] has the wrong type"),
    ({"typo": 1}, "unknown key(s) typo; known: lr, steps"),
])
def test_read_section_names_the_file_section_and_key(given, message):
    with pytest.raises(ProbeConfigError, match=r"^p\.toml: \[s\]") as error:
        read_section({"s": given}, "s", DEFAULTS, "p.toml")
    assert message in str(error.value)


def test_validators_header_spec_and_choice():
    positive = {"steps": lambda v: (isinstance(v, int) and v > 0, v)}
    assert read_section({"s": {"steps": 3}}, "s", DEFAULTS, "p", positive)["steps"] == 3
    with pytest.raises(ProbeConfigError, match="steps = -1"):
        read_section({"s": {"steps": -1}}, "s", DEFAULTS, "p", positive)
    with pytest.raises(ProbeConfigError, match="must be a table"):
        read_section({"s": 3}, "s", DEFAULTS, "p")
    assert read_header({"kind": "x"}, {"kind", "name"}, "p", "stem") == "stem"
    with pytest.raises(ProbeConfigError, match="unknown key.* extra"):
        read_header({"extra": 1}, {"kind", "name"}, "p", "stem")
    with pytest.raises(ProbeConfigError, match="name must be a non-empty string"):
        read_header({"name": " "}, {"name"}, "p", None)
    with pytest.raises(ProbeConfigError, match=r"\[model\] spec: .*unknown"):
        check_spec("nonsense:thing", "p")
    with pytest.raises(ProbeConfigError, match="choose one of a, b"):
        check_choice("c", ("a", "b"), "[s] x", "p")
