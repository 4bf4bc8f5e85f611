"""Users' work survives --force, interrupts and two runs at once (#29): locks on every output, stale locks and
temporary files of killed runs cleaned, interrupts that say what they left, resumable folder restores."""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import io
import json
import os
import signal
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from deqir_edu.apps import restore_folder
from deqir_edu.apps.cli import main
from deqir_edu.core import download as dl
from deqir_edu.core.files import atomic_path
from deqir_edu.core.locks import LOCK_NAME, OutputBusy, output_lock, temp_prefix
from deqir_edu.core.signals import Interrupted, deferred_signals, sigterm_as_interrupt
from deqir_edu.models import zoo
from deqir_edu.training import recipe

TEMP_MARK = ".deqir-tmp-"


def _cli(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(argv)
    return code, out.getvalue(), err.getvalue()


def _one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def _env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    env.update(DEQIR_EDU_CACHE=str(tmp_path / "cache"), TQDM_DISABLE="1", PYTHONUNBUFFERED="1")
    return env


def _wait(cond, timeout: float = 60.0) -> None:
    t0 = time.time()
    while not cond():
        assert time.time() - t0 < timeout, "timed out"
        time.sleep(0.02)


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


_HOLDER = """
import sys, time, contextlib
from deqir_edu.core.locks import output_lock
with contextlib.ExitStack() as stack:
    for arg in sys.argv[1:]:
        folder, _, name = arg.partition("::")
        stack.enter_context(output_lock(folder, name=name or ".deqir-edu.lock"))
    print("held", flush=True)
    time.sleep(120)
"""


@contextlib.contextmanager
def _holder(tmp_path: Path, *locks: str):
    """Another process (real, alive) that holds the given locks (``folder`` or ``folder::lockname``)."""
    p = subprocess.Popen([sys.executable, "-c", _HOLDER, *locks], stdout=subprocess.PIPE, text=True, env=_env(tmp_path))
    try:
        assert p.stdout is not None and p.stdout.readline().strip() == "held"
        yield p
    finally:
        p.kill()
        p.wait()


# --- the lock: one run per output, named when refused, stale locks taken over ----------------------------


def test_a_lock_held_by_another_process_refuses_then_goes_stale(tmp_path, capsys) -> None:
    folder = tmp_path / "out"
    with _holder(tmp_path, str(folder)) as other:
        with pytest.raises(OutputBusy) as busy, output_lock(folder, "--out out"):
            pass
        msg = str(busy.value)
        assert f"pid {other.pid} on {socket.gethostname()}" in msg and "started 20" in msg
        assert "--out out is in use by another run" in msg and str(folder / LOCK_NAME) in msg
        holder = json.loads((folder / LOCK_NAME).read_text())
        assert holder["pid"] == other.pid and "-c" in holder["command"]
    # the holder was killed (SIGKILL: no clean-up), its lock is stale now
    assert (folder / LOCK_NAME).exists()
    with output_lock(folder) as lock:
        assert json.loads(lock.read_text())["pid"] == os.getpid()
    assert "took over the lock of an earlier run that no longer runs" in capsys.readouterr().err
    assert not (folder / LOCK_NAME).exists()  # released at the end


_RACER = """
import sys, time
from pathlib import Path
from deqir_edu.core.locks import output_lock, OutputBusy
print("ready", flush=True)
go = Path(sys.argv[2])
while not go.exists():
    time.sleep(0.005)
try:
    with output_lock(sys.argv[1]):
        print("got", flush=True)
        time.sleep(2)
except OutputBusy:
    print("refused", flush=True)
"""


def test_of_four_processes_on_a_stale_lock_exactly_one_takes_it(tmp_path) -> None:
    folder, go = tmp_path / "out", tmp_path / "go"
    folder.mkdir()
    stale = {"pid": _dead_pid(), "host": socket.gethostname(), "started": "x", "command": "killed", "group": None}
    (folder / LOCK_NAME).write_text(json.dumps(stale))
    procs = [
        subprocess.Popen([sys.executable, "-c", _RACER, str(folder), str(go)], stdout=subprocess.PIPE, text=True)
        for _ in range(4)
    ]
    for p in procs:  # all four have imported and wait
        assert p.stdout is not None and p.stdout.readline().strip() == "ready"
    go.touch()
    results = sorted(p.communicate(timeout=60)[0].strip() for p in procs)
    assert results == ["got", "refused", "refused", "refused"], results
    assert not (folder / LOCK_NAME).exists()


def test_a_lock_of_another_host_is_never_taken_over(tmp_path) -> None:
    folder = tmp_path / "out"
    folder.mkdir()
    other = {"pid": _dead_pid(), "host": "elsewhere", "started": "x", "command": "deqir-edu eval", "group": None}
    (folder / LOCK_NAME).write_text(json.dumps(other))
    with pytest.raises(OutputBusy, match="on elsewhere"), output_lock(folder):
        pass
    assert json.loads((folder / LOCK_NAME).read_text())["host"] == "elsewhere"


def test_every_command_refuses_an_output_that_another_run_holds(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("DEQIR_EDU_CACHE", str(tmp_path / "cache"))
    src = tmp_path / "in"
    src.mkdir()
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(src / "a.png")
    entry = zoo.ZOO["ddpm-celebahq256"].path
    locks = [str(tmp_path / d) for d in ("run", "ev", "res")] + [f"{entry.parent}::.{entry.name}.lock"]
    with _holder(tmp_path, *locks) as other:
        for argv in (
            ["train", "tiny", "--out", str(tmp_path / "run"), "--steps", "1", "--no-progress"],
            ["eval", "--model", "gmm-fashion32", "--n", "1", "--out", str(tmp_path / "ev")],
            ["restore", str(src), "--task", "sr4", "--out", str(tmp_path / "res")],
            ["download", "ddpm-celebahq256", "--no-progress"],
        ):
            code, _, err = _cli(argv)
            line = _one_line(err)
            assert code == 2 and line.startswith(f"deqir-edu {argv[0]}: error: "), line
            assert f"in use by another run (pid {other.pid} on {socket.gethostname()}, started " in line, line
        assert sorted(p.name for p in (tmp_path / "res").iterdir()) == [LOCK_NAME]  # the other run's only


def test_two_train_runs_on_one_folder_and_sigterm(tmp_path) -> None:
    """Two real ``deqir-edu train`` processes on one --out: the second is refused (exit 2, one line naming the
    first); SIGTERM to the first ends it like Ctrl-C: it says the checkpoint it kept and leaves no temporary
    file and no lock."""
    run = tmp_path / "run"
    argv = ["train", "tiny", "--out", str(run), "--steps", "100000", "--no-progress"]
    first = subprocess.Popen(
        [sys.executable, "-m", "deqir_edu", *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(tmp_path),
    )
    try:
        _wait(lambda: (run / "checkpoint.pt").exists() or first.poll() is not None)
        second = subprocess.run(
            [sys.executable, "-m", "deqir_edu", *argv], capture_output=True, text=True, env=_env(tmp_path), timeout=120
        )
        line = _one_line(second.stderr)
        assert second.returncode == 2 and line.startswith("deqir-edu train: error: the run folder"), line
        assert f"pid {first.pid}" in line and "train tiny --out" in line
        first.send_signal(signal.SIGTERM)
        _, err = first.communicate(timeout=60)
    finally:
        first.kill()
    line = _one_line(err)
    assert first.returncode == 128 + signal.SIGTERM
    assert line.startswith("deqir-edu train: terminated (SIGTERM); kept ") and "continue with --resume" in line
    assert [p.name for p in run.iterdir() if p.name.startswith(".")] == []  # no lock, no temporary file


# --- temporary files: removed on SIGTERM, those of killed runs cleaned by the next run -------------------

_KILLED_WRITER = """
import sys, time
from deqir_edu.core.files import atomic_path
with atomic_path(sys.argv[1]) as tmp:
    tmp.write_bytes(b"half")
    print("writing", flush=True)
    time.sleep(120)
"""


def test_temporary_files_of_a_killed_run_are_removed_by_the_next_run(tmp_path, capsys) -> None:
    folder = tmp_path / "out"
    folder.mkdir()
    p = subprocess.Popen([sys.executable, "-c", _KILLED_WRITER, str(folder / "a.png")], stdout=subprocess.PIPE)
    assert p.stdout is not None and p.stdout.readline().strip() == b"writing"
    p.send_signal(signal.SIGKILL)  # no finally block runs
    p.wait()
    (left,) = [q.name for q in folder.iterdir()]
    assert TEMP_MARK in left and f"-{p.pid}-" in left
    alive = folder / (temp_prefix("b.png") + "x.png")  # a file of a run in progress (this process)
    alive.write_bytes(b"in progress")
    with output_lock(folder):
        pass
    assert sorted(q.name for q in folder.iterdir()) == [alive.name]  # only the dead process's file went
    assert "removed 1 temporary file(s)" in capsys.readouterr().err


def test_sigterm_takes_the_way_of_ctrl_c(tmp_path) -> None:
    dest = tmp_path / "a.txt"
    dest.write_text("old")
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(Interrupted) as err, sigterm_as_interrupt(), atomic_path(dest) as tmp:
        tmp.write_text("half")
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)  # the handler raises before this ends
    assert err.value.signum == signal.SIGTERM
    assert signal.getsignal(signal.SIGTERM) == before  # handler given back
    assert dest.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["a.txt"]


def test_deferred_signals_finish_the_block_first() -> None:
    done = []
    with pytest.raises(KeyboardInterrupt), deferred_signals():
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.2)
        done.append("swap")
    assert done == ["swap"]


# --- download --force keeps the old copy until the new one is complete and verified ----------------------


@pytest.fixture
def cached(tmp_path, monkeypatch, server):
    """ddpm-celebahq256 pointed at the local server, with a verified cached file (bytes and recorded hash)."""
    monkeypatch.setenv("DEQIR_EDU_CACHE", str(tmp_path / "cache"))
    data = b"first version of the weights" * 100
    server.files["/w.ckpt"] = data
    entry = zoo.ZOO["ddpm-celebahq256"]
    monkeypatch.setitem(zoo.ZOO, entry.name, dataclasses.replace(entry, url=server.url("/w.ckpt")))
    dl.download(server.url("/w.ckpt"), entry.path, progress=False)  # no structure check: a bare download
    return entry.path


def _state(path: Path) -> tuple[bytes, str | None]:
    side = dl.sidecar_path(path)
    return path.read_bytes(), side.read_text() if side.exists() else None


@pytest.mark.parametrize("sidecar", [True, False], ids=["verified-cache", "placed-by-hand"])
def test_force_with_the_server_unreachable_keeps_the_file(cached, monkeypatch, sidecar) -> None:
    if not sidecar:  # a file the user put there by hand
        dl.sidecar_path(cached).unlink()
        cached.write_bytes(b"placed by hand" * 10)
    before = _state(cached)
    entry = zoo.ZOO["ddpm-celebahq256"]
    monkeypatch.setitem(zoo.ZOO, entry.name, dataclasses.replace(entry, url=f"http://127.0.0.1:{_closed_port()}/w"))
    code, _, err = _cli(["download", "ddpm-celebahq256", "--force", "--no-progress"])
    line = _one_line(err)
    assert code == 2 and "could not download" in line and f"the file already at {cached}" in line
    assert ("and its recorded hash were kept unchanged" if sidecar else "was kept unchanged") in line
    assert _state(cached) == before  # byte for byte, and the recorded hash
    assert sorted(p.name for p in cached.parent.iterdir()) == sorted(
        [cached.name] + ([dl.sidecar_path(cached).name] if sidecar else [])
    )


@pytest.mark.parametrize("failure", ["404", "truncated", "html"])
def test_force_with_a_failing_server_keeps_the_file(cached, server, failure) -> None:
    before = _state(cached)
    if failure == "404":
        del server.files["/w.ckpt"]
    elif failure == "truncated":
        server.files["/w.ckpt"] = b"second version" * 100
        server.short["/w.ckpt"] = 50
    else:
        server.files["/w.ckpt"] = b"<!DOCTYPE html><html>sign in</html>"
    code, _, err = _cli(["download", "ddpm-celebahq256", "--force", "--no-progress"])
    assert code == 2 and "kept unchanged" in _one_line(err)
    assert _state(cached) == before


def test_force_replaces_file_and_hash_once_the_new_download_checks_out(cached, server) -> None:
    new = b"second version" * 100
    server.files["/w.ckpt"] = new
    dl.download(server.url("/w.ckpt"), cached, progress=False, force=True)
    assert _state(cached) == (new, f"{hashlib.sha256(new).hexdigest()}  {cached.name}\n")
    assert sorted(p.name for p in cached.parent.iterdir()) == [cached.name, dl.sidecar_path(cached).name]


def test_ctrl_c_during_download_force_leaves_the_old_file(cached, monkeypatch) -> None:
    before = _state(cached)

    def interrupted_stream(url, dest, out, size, progress):
        out.write(b"part of the new file")
        raise KeyboardInterrupt

    monkeypatch.setattr(dl, "_stream", interrupted_stream)
    code, _, err = _cli(["download", "ddpm-celebahq256", "--force", "--no-progress"])
    line = _one_line(err)
    assert code == 130 and line == (
        f"deqir-edu download: interrupted; nothing was written: {cached} is unchanged "
        "(the partial download was removed)"
    )
    assert _state(cached) == before and TEMP_MARK not in " ".join(p.name for p in cached.parent.iterdir())


def test_ctrl_c_after_the_swap_says_the_new_file_is_there(cached, server, monkeypatch) -> None:
    server.files["/w.ckpt"] = new = b"second version" * 100
    monkeypatch.setattr(zoo, "_structure_check", lambda entry: lambda path: None)  # the bytes are no network
    real = dl._write_sidecar

    def then_ctrl_c(dest, digest):
        real(dest, digest)
        os.kill(os.getpid(), signal.SIGINT)  # arrives during the swap: acted on after it

    monkeypatch.setattr(dl, "_write_sidecar", then_ctrl_c)
    code, _, err = _cli(["download", "ddpm-celebahq256", "--force", "--no-progress"])
    assert code == 130 and "the download had finished" in _one_line(err)
    assert _state(cached)[0] == new and _state(cached)[1].split()[0] == hashlib.sha256(new).hexdigest()


def test_downloaded_files_get_the_usual_permissions(server, tmp_path) -> None:
    server.files["/w.bin"] = b"weights" * 100
    old = os.umask(0o022)
    try:
        path = dl.download(server.url("/w.bin"), tmp_path / "w.bin", progress=False)
        with atomic_path(tmp_path / "x.txt") as tmp:
            tmp.write_text("x")
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert stat.S_IMODE(dl.sidecar_path(path).stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "x.txt").stat().st_mode) == 0o644


# --- eval never replaces a file it did not write -----------------------------------------------------------


def test_eval_refuses_to_replace_the_users_results_md(tmp_path) -> None:
    out = tmp_path / "ev"
    out.mkdir()
    (out / "results.md").write_text("my own notes\n")
    argv = ["eval", "--model", "gmm-fashion32", "--n", "1", "--tasks", "sr4", "--methods", "pinv", "--out", str(out)]
    code, _, err = _cli(argv)
    line = _one_line(err)
    assert code == 2 and "already holds results.md" in line and "--overwrite" in line
    assert (out / "results.md").read_text() == "my own notes\n" and sorted(p.name for p in out.iterdir()) == [
        "results.md"
    ]
    code, _, _ = _cli([*argv, "--overwrite"])
    assert code == 0 and (out / "results.md").read_text() != "my own notes\n"
    assert sorted(p.name for p in out.iterdir()) == ["results.json", "results.md"]


# --- an interrupted folder restore is continued with --resume ----------------------------------------------


@pytest.fixture
def folder(tmp_path, monkeypatch):
    """Four input images; each restore of one image is replaced by a quick fake that writes the output
    PNG (``calls`` lists them; ``stop_at`` raises Ctrl-C in that call)."""
    src = tmp_path / "in"
    src.mkdir()
    for i in range(4):
        Image.fromarray(np.full((8, 8), 40 * i, np.uint8)).save(src / f"im{i}.png")
    state = {"calls": [], "stop_at": None}

    def fake_one(args, src_file, dst, device, run_one):
        state["calls"].append(dst.name)
        if len(state["calls"]) == state["stop_at"]:
            raise KeyboardInterrupt
        with atomic_path(dst) as tmp:
            Image.fromarray(np.zeros((32, 32), np.uint8)).save(tmp, format="PNG")
        return 0

    monkeypatch.setattr(restore_folder, "_one", fake_one)
    state["argv"] = ["restore", str(src), "--task", "sr4", "--out", str(tmp_path / "res"), "--steps", "3"]
    return state


def test_an_interrupted_folder_restore_says_what_it_wrote_and_resumes(folder, tmp_path) -> None:
    folder["stop_at"] = 3  # Ctrl-C while restoring the third image
    code, _, err = _cli(folder["argv"])
    res = tmp_path / "res"
    assert code == 130 and _one_line(err) == (
        f"deqir-edu restore: interrupted; 2 of 4 outputs are written in {res}; continue with the same "
        "command plus --resume (it restores only the other 2)"
    )
    assert sorted(p.name for p in res.glob("*.png")) == ["im0.png", "im1.png"]
    code, _, err = _cli(folder["argv"])  # without --resume: refused, and told how to continue
    assert code == 2 and "--resume" in _one_line(err)
    code, _, err = _cli([*folder["argv"], "--steps", "5", "--resume"])  # other settings: refused
    assert code == 2 and "steps 3" in _one_line(err)
    folder["calls"].clear()
    folder["stop_at"] = None
    code, out, _ = _cli([*folder["argv"], "--resume"])
    assert code == 0 and folder["calls"] == ["im2.png", "im3.png"]  # only the two not finished
    assert "2 of 4 outputs are finished" in out
    assert sorted(p.name for p in res.glob("*.png")) == ["im0.png", "im1.png", "im2.png", "im3.png"]
    assert not (res / LOCK_NAME).exists()


def test_resume_after_an_interrupted_overwrite_redoes_the_old_outputs(folder, tmp_path) -> None:
    res = tmp_path / "res"
    assert _cli(folder["argv"])[0] == 0  # a finished run, then a new one over it with --overwrite
    time.sleep(0.1)
    folder["calls"].clear()
    folder["stop_at"] = 2
    code, _, err = _cli([*folder["argv"], "--overwrite"])
    assert code == 130 and "1 of 4 outputs are written" in _one_line(err)
    folder["calls"].clear()
    folder["stop_at"] = None
    assert _cli([*folder["argv"], "--resume"])[0] == 0
    assert folder["calls"] == ["im1.png", "im2.png", "im3.png"]  # im0 is the new run's; the rest were old
    assert len(list(res.glob("*.png"))) == 4


def test_resume_refuses_outputs_it_did_not_write(folder, tmp_path) -> None:
    res = tmp_path / "res"
    res.mkdir()
    Image.fromarray(np.zeros((32, 32), np.uint8)).save(res / "im0.png")  # the user's own file
    code, _, err = _cli([*folder["argv"], "--resume"])
    assert code == 2 and "--overwrite" in _one_line(err) and folder["calls"] == []


# --- an interrupted train says what it kept -----------------------------------------------------------------


def _ctrl_c_at_step(monkeypatch, n: int) -> None:
    real, calls = recipe._optimiser_step, []

    def step(run, planned, dc):
        calls.append(1)
        if len(calls) == n:
            raise KeyboardInterrupt
        return real(run, planned, dc)

    monkeypatch.setattr(recipe, "_optimiser_step", step)


def test_interrupted_train_names_the_checkpoint_it_kept(tmp_path, monkeypatch) -> None:
    run = tmp_path / "run"
    argv = ["train", "tiny", "--out", str(run), "--steps", "30", "--no-progress"]
    _ctrl_c_at_step(monkeypatch, 5)  # before the first checkpoint (step 10)
    code, _, err = _cli(argv)
    assert code == 130 and _one_line(err) == (
        f"deqir-edu train: interrupted; nothing was written to {run} (the first checkpoint comes at step 10)"
    )
    assert sorted(p.name for p in run.iterdir()) == []
    monkeypatch.undo()
    _ctrl_c_at_step(monkeypatch, 15)
    code, _, err = _cli(argv)
    assert code == 130 and _one_line(err) == (
        f"deqir-edu train: interrupted; kept {run / 'checkpoint.pt'} of step 10 and loss_log.csv; "
        "continue with --resume"
    )
    monkeypatch.undo()
    code, out, _ = _cli([*argv, "--resume"])
    assert code == 0 and "resumed tiny from step 10" in out and (run / "tiny.safetensors").exists()


def test_interrupted_overwrite_says_the_earlier_weights_are_still_there(tmp_path, monkeypatch) -> None:
    run = tmp_path / "run"
    argv = ["train", "tiny", "--out", str(run), "--steps", "10", "--no-progress"]
    assert _cli(argv)[0] == 0
    weights = (run / "tiny.safetensors").read_bytes()
    _ctrl_c_at_step(monkeypatch, 15)
    code, _, err = _cli([*argv, "--steps", "40", "--overwrite"])
    line = _one_line(err)
    assert code == 130 and f"kept {run / 'checkpoint.pt'} of step 10" in line
    assert f"tiny.safetensors, tiny.json in {run} are still the earlier run's" in line
    assert (run / "tiny.safetensors").read_bytes() == weights
