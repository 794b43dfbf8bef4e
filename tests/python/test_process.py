"""Process life: fork (multiprocessing and os.fork), an interpreter killed with SIGKILL,
Ctrl-C, and exiting without finish()."""

import os
import signal
import textwrap
from pathlib import Path

from conftest import cli, history, python, states, wait_for

FORKING = textwrap.dedent("""
    import multiprocessing as mp, os, sys, warnings
    import tidelog

    def worker(i):
        with warnings.catch_warnings(record=True) as w:
            warnings.simplefilter("always")
            tidelog.log({"from_child": float(i)})   # dropped: the run is the parent's
        tidelog.finish()                             # a no-op in the child
        return (os.getpid(), [str(x.message) for x in w])

    run = tidelog.init(project="fork", mode="offline", system_interval=0.01)
    for i in range(50):
        tidelog.log({"parent": float(i)})
    with mp.get_context("fork").Pool(4) as pool:
        results = pool.map(worker, range(8))
    warned = {}
    for pid, messages in results:
        warned.setdefault(pid, []).extend(messages)
    assert all(len(m) == 1 and "belongs to process %d" % os.getpid() in m[0] for m in warned.values()), results
    for i in range(50, 100):
        tidelog.log({"parent": float(i)})
    pid = os.fork()
    if pid == 0:
        # A plain os.fork child that leaves through the interpreter's exit (atexit runs).
        tidelog.log({"from_child": 1.0})
        sys.exit(0)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    for i in range(100, 150):
        tidelog.log({"parent": float(i)})
    tidelog.finish()
    print(run.id)
""")


def test_forked_children_never_write_or_finish_the_parents_run(tmp_path, server):
    p = python(FORKING, cwd=tmp_path)
    out, err = p.communicate(timeout=120)
    assert p.returncode == 0, err
    run_id = out.split()[-1]
    assert states(tmp_path / "tidelog") == {run_id: "finished"}
    cli("sync", env=server.env(), cwd=tmp_path)
    rows = history(server, run_id)
    assert [r["parent"] for r in rows] == [float(i) for i in range(150)]
    assert all("from_child" not in r for r in rows)
    assert server.json(f"/api/v1/runs/{run_id}")["state"] == "finished"


KILLED = textwrap.dedent("""
    import sys
    import tidelog
    run = tidelog.init(project="killed", mode="offline")
    print(run.id, run.dir, flush=True)
    for i in range(1000):
        tidelog.log({"loss": 1.0 / (i + 1), "i": i})
    tidelog.log({"flushed_marker": 1.0})
    sys.stdin.read()   # wait here until killed
""")


def test_a_killed_interpreter_leaves_a_crashed_run_with_every_flushed_row(tmp_path, server):
    import subprocess
    p = python(KILLED, cwd=tmp_path, stdin=subprocess.PIPE)
    run_id, run_dir = p.stdout.readline().split()
    records = Path(run_dir) / "records.tlog"
    wait_for(lambda: records.is_file() and b"flushed_marker" in records.read_bytes(),
             "the writer to flush the marker row")
    os.kill(p.pid, signal.SIGKILL)
    p.wait(timeout=30)
    assert states(tmp_path / "tidelog") == {run_id: "crashed"}
    cli("sync", env=server.env(), cwd=tmp_path)
    rows = history(server, run_id)
    assert [r["i"] for r in rows[:1000]] == list(range(1000))
    assert rows[1000]["flushed_marker"] == 1.0 and len(rows) == 1001
    assert server.json(f"/api/v1/runs/{run_id}")["state"] == "crashed"


def ending(body):
    return textwrap.dedent("""
        import os, signal, sys
        import tidelog
        run = tidelog.init(project="ending", mode="offline", system_interval=0)
        print(run.id, flush=True)
        for i in range(20):
            tidelog.log({"i": i})
    """) + textwrap.dedent(body)


def test_exit_without_finish_ctrl_c_and_uncaught_errors_still_flush_and_mark_the_run(tmp_path, server):
    cases = [
        ("finished", ""),                                           # no finish(): atexit does it
        ("failed", "raise RuntimeError('boom')"),                   # uncaught exception
        ("failed", "os.kill(os.getpid(), signal.SIGINT)\nsys.stdin.read()"),  # Ctrl-C
    ]
    ids = {}
    for want, body in cases:
        # A runner started as a background job has SIGINT ignored, and Python then installs no
        # KeyboardInterrupt handler: give the child the default a terminal gives.
        p = python(ending(body), cwd=tmp_path, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        out, err = p.communicate(timeout=60)
        assert (p.returncode == 0) == (want == "finished"), err
        ids[out.split()[0]] = want
        if "SIGINT" in body:
            assert "KeyboardInterrupt" in err
    assert states(tmp_path / "tidelog") == ids
    cli("sync", env=server.env(), cwd=tmp_path)
    for run_id, want in ids.items():
        assert [r["i"] for r in history(server, run_id)] == list(range(20))
        assert server.json(f"/api/v1/runs/{run_id}")["state"] == want
