"""Hardening, class 5: the CLI's errors.

One error boundary in ``main()``: a one-line message and a distinct exit code per class of user
error (listed in ``conceptlab --help``), tracebacks only with ``--debug``; ``--out`` and ``--store``
are checked before any work; Ctrl-C says what was kept and how to resume.
"""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import conceptlab.cli as cli
from conceptlab.cli import EXIT_CODES, build_parser, main

REPO = Path(__file__).resolve().parents[1]


def run_cli(*args, home, timeout=300, preexec_fn=None):
    env = {**os.environ, "CONCEPTLAB_HOME": str(home), "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "conceptlab.cli", *args], capture_output=True, text=True, env=env,
                          timeout=timeout, preexec_fn=preexec_fn, cwd=home)


def test_help_lists_every_exit_code():
    text = build_parser().format_help()
    for code, meaning in EXIT_CODES.items():
        assert f"  {code:<4} {meaning}" in text
    assert len(set(EXIT_CODES)) == len(EXIT_CODES) and {0, 1, 2, 130} <= set(EXIT_CODES)


@pytest.mark.parametrize("error, code", [
    ("LimitError", 7), ("ArtifactIntegrityError", 8), ("StoreCorruptionError", 8), ("StoreUnavailableError", 5),
    ("InsufficientDiskSpaceError", 6), ("InsufficientMemoryError", 6), ("ENOSPC", 6), ("FileNotFoundError", 3),
    ("PermissionError", 4), ("EROFS", 4), ("ProbeConfigError", 2), ("ValueError", 2), ("UnknownNameError", 2),
    ("LLMUnavailableError", 9), ("LLMResponseError", 9), ("APIConnectionError", 9), ("RuntimeError", 1), ("TypeError", 1),
])
def test_each_class_of_error_has_its_exit_code(error, code):
    import httpx2
    import openai

    from conceptlab.concepts.bank import ArtifactIntegrityError, UnknownNameError
    from conceptlab.concepts.language.providers import LLMResponseError, LLMUnavailableError
    from conceptlab.experiments import ProbeConfigError
    from conceptlab.limits import LimitError
    from conceptlab.store import InsufficientDiskSpaceError, InsufficientMemoryError, StoreCorruptionError, StoreUnavailableError

    made = {
        "LimitError": LimitError("x"), "ArtifactIntegrityError": ArtifactIntegrityError("x"), "StoreCorruptionError": StoreCorruptionError("x"),
        "StoreUnavailableError": StoreUnavailableError("x"), "InsufficientDiskSpaceError": InsufficientDiskSpaceError("x"),
        "InsufficientMemoryError": InsufficientMemoryError("x"), "ENOSPC": OSError(errno.ENOSPC, "No space left on device"),
        "FileNotFoundError": FileNotFoundError("x"), "PermissionError": PermissionError("x"), "EROFS": OSError(errno.EROFS, "Read-only file system"),
        "ProbeConfigError": ProbeConfigError("x"), "ValueError": ValueError("x"), "UnknownNameError": UnknownNameError("x"),
        "LLMUnavailableError": LLMUnavailableError("x"), "LLMResponseError": LLMResponseError("x"),
        "APIConnectionError": openai.APIConnectionError(request=httpx2.Request("POST", "http://127.0.0.1/v1")),
        "RuntimeError": RuntimeError("x"), "TypeError": TypeError("x"),
    }[error]
    assert cli._exit_code(made) == code


def test_internal_errors_have_no_traceback_unless_debug(monkeypatch, capsys):
    def broken(args):
        raise RuntimeError("a bug\nover two lines")

    monkeypatch.setattr(cli, "cmd_info", broken)
    assert main(["info"]) == 1
    err = capsys.readouterr().err
    assert err.strip() == "conceptlab: internal error: RuntimeError: a bug over two lines (rerun with --debug for the traceback, and please report it)"
    assert main(["--debug", "info"]) == 1
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err and "RuntimeError: a bug" in err


def test_ctrl_c_says_what_was_kept_and_how_to_resume(monkeypatch, capsys, tmp_path, tiny_clip_dir):
    from conceptlab.store import ActivationStore

    def interrupted(self, *args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(ActivationStore, "get_or_compute", interrupted)
    code = main(["embed", "--backbone", f"local-dir:{tiny_clip_dir}", "--size", "8", "--store", str(tmp_path / "s")])
    assert code == 130
    err = capsys.readouterr().err.strip()
    assert err == f"conceptlab: interrupted; finished shards are kept in the store at {tmp_path / 's'}; rerun the same command to resume from them"


@pytest.fixture()
def home(tmp_path, monkeypatch):
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("CONCEPTLAB_HOME", str(home))
    monkeypatch.chdir(home)
    return home


def run_main(capsys, *args) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("conceptlab: error: ") and "Traceback" not in err, err
    return lines[0]


def test_info_lists_a_store_with_a_bad_entry(home, capsys):
    bad = home / "store" / ("ab" * 32)
    bad.mkdir(parents=True)
    (bad / "manifest.json").write_text("{not json")
    code, out, err = run_main(capsys, "info")
    assert code == 0, err
    assert f"{'ab' * 6}  [unreadable: " in out and "not valid JSON" in out


PROBE = """
    [backbone]
    spec = "zoo:shapes-clip"
    [dataset]
    sizes = { train = 10, val = 10, test = 10, shifted = 10 }
    [concepts]
    source = "text"
    [method]
    name = "pcbm"
"""


@pytest.mark.parametrize("args, code, message", [
    (["info", "--store", "{file}"], 5, "--store {file} is a file, not a store folder"),
    (["embed", "--store", "{file}", "--dry-run"], 5, "--store {file} is a file, not a store folder"),
    (["embed", "--size", str(10**12), "--dry-run"], 7, "ShapesWorld size is 1,000,000,000,000, over the limit of 10,000,000,000 rows"),
    (["embed", "--batch-size", "0", "--dry-run"], 2, "--batch-size must be positive"),
    (["probe", "run", "{probe}", "--out", "{file}"], 4, "--out {file} is a file, not a folder"),
    (["probe", "run", "{probe}", "--out", "{file}/sub"], 4, "cannot be created: {file} is a file"),
    (["probe", "run", "{probe}", "--out", "{toolong}"], 4, "is longer than a file name may be"),
    (["probe", "run", "{longname}"], 2, "name is 300 characters, over the limit of 100 characters"),
    (["probe", "validate", "{probe}", "{missing}"], 2, "1 of 2 probe files are invalid"),
    (["data", "export", "shapesworld:test?size=4", "{file}"], 4, "out_dir {file} is a file, not a folder"),
])
def test_user_errors_are_one_line_with_their_code_before_any_work(home, capsys, monkeypatch, args, code, message):
    from conceptlab.experiments import runner

    monkeypatch.setattr(runner, "run_probe", lambda *a, **k: pytest.fail("the run started"))
    file = home.parent / "a-file"
    file.write_text("x")
    probe = home.parent / "p.toml"
    probe.write_text(textwrap.dedent(PROBE))
    longname = home.parent / "long.toml"
    longname.write_text(f'name = "{"n" * 300}"\n' + textwrap.dedent(PROBE))
    names = {"file": file, "probe": probe, "longname": longname, "missing": home.parent / "missing.toml", "toolong": home / ("x" * 300)}
    got, out, err = run_main(capsys, *[a.format(**names) for a in args])
    assert got == code, err
    if args[:2] == ["probe", "validate"]:
        assert out.startswith(f"{probe}: ok") and err.count("conceptlab: error:") == 2 and message in err
    else:
        assert message.format(**names) in one_line(err)
    assert not (home / "store").exists()  # no work started


def test_a_real_run_reports_without_a_traceback(tmp_path):
    """One real subprocess, as a user runs it: the message and code reach the shell."""
    (tmp_path / "a-file").write_text("x")
    result = run_cli("info", "--store", str(tmp_path / "a-file"), home=tmp_path)
    assert result.returncode == 5
    assert result.stderr.strip() == f"conceptlab: error: --store {tmp_path / 'a-file'} is a file, not a store folder"


def test_embed_dry_run_at_a_hundred_million_rows_prints_its_estimate(home, capsys, tiny_clip_dir):
    code, out, err = run_main(capsys, "embed", "--backbone", f"local-dir:{tiny_clip_dir}", "--size", str(10**8), "--dry-run")
    assert code == 0, err
    estimate = json.loads(out.split(": ", 1)[1])
    assert estimate["rows"] == 10**8 and estimate["dim"] == 32 and estimate["disk_bytes"] > 10**8 * 32 * 4
    assert not (home / "store").exists()


def test_a_read_only_store_serves_the_cli_and_refuses_what_it_lacks(home, capsys, tiny_clip_dir, monkeypatch):
    """The store cannot be written (every exclusive lock is refused, as on a read-only mount; the
    real read-only mount is exercised in test_hardening_store): a complete entry is served, a
    missing one is exit code 5 with a message that says why."""
    import conceptlab.store.store as store_module
    from conceptlab.store.files import entry_lock

    spec = f"local-dir:{tiny_clip_dir}"
    assert run_main(capsys, "embed", "--backbone", spec, "--size", "24")[0] == 0

    def read_only(directory, create=True, shared=False):
        if not shared:
            raise OSError(errno.EROFS, "Read-only file system", str(directory))
        return entry_lock(directory, create=False, shared=True)

    monkeypatch.setattr(store_module, "entry_lock", read_only)
    code, out, err = run_main(capsys, "embed", "--backbone", spec, "--size", "24")
    assert code == 0 and "stored (24, 32)" in out, err
    code, out, err = run_main(capsys, "embed", "--backbone", spec, "--size", "25")
    assert code == 5
    assert "is read-only (or not writable by this user) and holds no entry for shapesworld-v1:test:n=25" in one_line(err)
