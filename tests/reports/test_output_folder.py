"""Output folders: checked before any work, replaced whole by renames, no staging or temporary folder left behind."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from synth_fixture import synth_payload

from golden.errors import ConfigError
from reports import report
from reports.app import demo
from reports.app.cli import main
from reports.output import OUTPUT_MARKER, staged_report

REPO = Path(__file__).resolve().parents[2]


def dead_pid() -> int:
    """The id of a process that has exited (and been reaped)."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def no_work(*args, **kwargs):
    raise AssertionError("the output folder must be checked before any work starts")


@pytest.fixture
def immutable(tmp_path):
    folder = tmp_path / "immutable"
    folder.mkdir()
    if subprocess.run(["chattr", "+i", str(folder)], capture_output=True).returncode != 0:
        pytest.skip("chattr +i is not available here")
    yield folder
    subprocess.run(["chattr", "-i", str(folder)], check=True)


def bad_outputs(tmp_path: Path, immutable: Path) -> dict[str, tuple[str, str]]:
    (tmp_path / "file").write_text("")
    os.symlink(tmp_path / "loop_b", tmp_path / "loop_a")
    os.symlink(tmp_path / "loop_a", tmp_path / "loop_b")
    return {"empty": ("", "is the working directory"), "dot": (".", "is the working directory"),
            "file": (str(tmp_path / "file"), "exists and is not a folder"),
            "under a file": (str(tmp_path / "file" / "out"), "is not writable"),
            "proc": ("/proc/lutmac-out", "is not writable"),
            "symlink loop": (str(tmp_path / "loop_a"), "symlink loop"),
            "under a symlink loop": (str(tmp_path / "loop_a" / "out"), "is not writable"),
            "immutable": (str(immutable), "is not writable"),
            "in an immutable folder": (str(immutable / "out"), "is not writable")}


@pytest.mark.parametrize("command", ["report", "demo"])
def test_bad_output_folder_is_one_line_before_any_work(command, tmp_path, immutable, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(report, "load_synthesis", no_work)
    monkeypatch.setattr(demo.digits, "load_digits_split", no_work)
    for case, (out, message) in bad_outputs(tmp_path, immutable).items():
        assert main([command, "--out", out]) == 2, case
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "Traceback" not in err, (case, err)
        assert err.startswith(f"lutmac {command}: error: output folder ") and message in err, (case, err)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file", "immutable", "loop_a", "loop_b"]


def test_a_writable_folder_passes_and_is_not_created(tmp_path):
    from reports.output import check_output_folder  # noqa: PLC0415  (new here: main fails on the import)

    check_output_folder(tmp_path / "new" / "out")
    assert (tmp_path / "new").is_dir() and not (tmp_path / "new" / "out").exists()


def test_a_successful_run_replaces_the_whole_folder(tmp_path):
    out = tmp_path / "out"
    with staged_report(out) as writer:
        writer.text("summary.md", "full run")
        writer.text("checkpoints/lsq_w4.pt", "an earlier run's checkpoint")
    with staged_report(out) as writer:
        writer.text("summary.md", "quick run")
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*")) == [OUTPUT_MARKER, "summary.md"]
    assert (out / "summary.md").read_text() == "quick run"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    umask = os.umask(0o022)
    os.umask(umask)
    assert out.stat().st_mode & 0o777 == 0o777 & ~umask  # as a folder made by mkdir, not mkdtemp's 0700


def test_a_folder_lutmac_did_not_write_is_not_replaced(tmp_path, monkeypatch, capsys):
    """Replacing whole must not delete a user's own files: only an empty folder or one marked as lutmac's output."""
    mine = tmp_path / "documents"
    mine.mkdir()
    (mine / "thesis.tex").write_text("years of work")
    monkeypatch.setattr(report, "load_synthesis", no_work)
    assert main(["report", "--out", str(mine)]) == 2
    assert "holds files lutmac did not write" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="holds files lutmac did not write"), staged_report(mine) as writer:
        writer.text("a.md", "a")
    assert [p.name for p in mine.iterdir()] == ["thesis.tex"]
    with staged_report(mine, replace_folder=False) as writer:  # file by file (lutmac resnet20 --out) is fine
        writer.text("a.md", "a")
    assert sorted(p.name for p in mine.iterdir()) == ["a.md", "thesis.tex"]
    empty = tmp_path / "empty"
    empty.mkdir()
    with staged_report(empty) as writer:
        writer.text("a.md", "a")
    assert sorted(p.name for p in empty.iterdir()) == [OUTPUT_MARKER, "a.md"]


def test_a_symlinked_output_folder_is_replaced_at_its_target(tmp_path):
    target = tmp_path / "target"
    target.mkdir()
    (target / "old.md").write_text("old")
    (target / OUTPUT_MARKER).write_text("")
    os.symlink(target, tmp_path / "link")
    with staged_report(tmp_path / "link") as writer:
        writer.text("new.md", "new")
    assert (tmp_path / "link").is_symlink() and sorted(p.name for p in target.iterdir()) == [OUTPUT_MARKER, "new.md"]


def test_stale_staging_folders_of_dead_runs_are_removed(tmp_path):
    from golden.files import remove_stale  # noqa: PLC0415

    out = tmp_path / "out"
    dead, alive = dead_pid(), os.getppid()
    stale = [tmp_path / f".out.staging-{dead}-abc", tmp_path / f".out.old-{dead}-def"]
    kept = [tmp_path / f".out.staging-{alive}-ghi", tmp_path / f".other.staging-{dead}-jkl"]
    for folder in stale + kept:
        (folder / "sub").mkdir(parents=True)
    with staged_report(out) as writer:
        writer.text("a.md", "a")
    with staged_report(out) as writer:  # the second run makes and removes an .out.old- folder
        writer.text("a.md", "b")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["out"] + [p.name for p in kept])
    assert remove_stale(tmp_path, ".other.staging-") == [kept[1]]


def test_temporary_folder_is_removed_and_named_for_its_process(tmp_path):
    from golden.files import temporary_folder  # noqa: PLC0415

    with temporary_folder(tmp_path, "lutmac-x-") as folder:
        assert folder.name.startswith(f"lutmac-x-{os.getpid()}-") and folder.is_dir()
        (folder / "f").write_text("")
    assert list(tmp_path.iterdir()) == []


STAGED_AND_WAITING = """
import sys, time
from golden.files import removed_on_signal, temporary_folder
from reports.output import staged_report
with removed_on_signal(), staged_report(sys.argv[1]) as writer, temporary_folder(sys.argv[2], "lutmac-t-"):
    writer.text("half.md", "half of a run")
    print("staged", flush=True)
    time.sleep(60)
"""


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_removes_the_staging_folder_and_exits_non_zero(signum, tmp_path):
    out, scratch = tmp_path / "out", tmp_path / "scratch"
    out.mkdir()
    scratch.mkdir()
    (out / "summary.md").write_text("earlier results")
    (out / OUTPUT_MARKER).write_text("")
    env = os.environ | {"PYTHONPATH": str(REPO)}
    child = subprocess.Popen([sys.executable, "-c", STAGED_AND_WAITING, str(out), str(scratch)], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, env=env, cwd=tmp_path)
    assert child.stdout.readline() == "staged\n"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".out.staging-")] and list(scratch.iterdir())
    child.send_signal(signum)
    start = time.monotonic()
    _, err = child.communicate(timeout=30)
    assert time.monotonic() - start < 10
    assert child.returncode == 128 + signum, err
    assert f"stopped by {signal.Signals(signum).name}; stopped 0 child process(es), removed 2 temporary folder(s)" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "scratch"] and list(scratch.iterdir()) == []
    assert sorted(p.name for p in out.iterdir()) == [OUTPUT_MARKER, "summary.md"]


@pytest.mark.parametrize("command", [["report", "--networks", "resnet18"], ["demo", "--quick"]], ids=["report", "demo"])
def test_the_cli_removes_temporaries_on_a_signal(command, tmp_path):
    """`lutmac report` and `lutmac demo` themselves: SIGTERM while they compute leaves no staging folder and the
    old results (the demo's RTL and Yosys threads are not waited for)."""
    out = tmp_path / "out"
    out.mkdir()
    (out / "summary.md").write_text("earlier results")
    (out / OUTPUT_MARKER).write_text("")
    (tmp_path / "synth.json").write_text(json.dumps(synth_payload()))
    env = os.environ | {"PYTHONPATH": str(REPO)}
    child = subprocess.Popen([sys.executable, "-m", "reports.app.cli", command[0], "--out", str(out), "--synth",
                              str(tmp_path / "synth.json"), *command[1:]], stderr=subprocess.PIPE, stdout=subprocess.DEVNULL,
                             text=True, env=env, cwd=tmp_path)
    deadline = time.monotonic() + 120
    while not [p for p in tmp_path.iterdir() if p.name.startswith(".out.staging-")]:
        assert child.poll() is None and time.monotonic() < deadline, f"lutmac {command[0]} never staged"
        time.sleep(0.05)
    child.send_signal(signal.SIGTERM)
    _, err = child.communicate(timeout=30)
    assert child.returncode == 128 + signal.SIGTERM, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "synth.json"]
    assert sorted(p.name for p in out.iterdir()) == [OUTPUT_MARKER, "summary.md"]


def test_files_moved_in_one_by_one_may_go_to_the_working_directory(tmp_path, monkeypatch):
    """`lutmac resnet20 --out .` adds its files beside the user's: nothing is replaced, so the folder may be cwd."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "notes.txt").write_text("mine")
    with staged_report(Path("."), replace_folder=False) as writer:
        writer.text("rtl_summary.md", "summary")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt", "rtl_summary.md"]
