"""Fixtures for the Python package's tests: a real `tidelog serve` on 127.0.0.1, the CLI,
and a Python interpreter to run scripts in (the installed package, never a mock)."""

import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def tidelog_bin():
    """The CLI built by `cargo build`/`cargo test`: $TIDELOG_BIN, else the cargo target dir's."""
    if os.environ.get("TIDELOG_BIN"):
        return os.environ["TIDELOG_BIN"]
    target = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
    for profile in ("debug", "release"):
        exe = target / profile / "tidelog"
        if exe.is_file():
            return str(exe)
    pytest.fail(f"no tidelog binary under {target}: run `cargo build` first or set TIDELOG_BIN")


class Server:
    """A running `tidelog serve` with one account's key."""

    def __init__(self, url, key, proc):
        self.url, self.key, self.proc = url, key, proc

    def get(self, path):
        req = urllib.request.Request(self.url + path, headers={"Authorization": f"Bearer {self.key}"})
        with urllib.request.urlopen(req, timeout=30) as res:
            return res.read()

    def json(self, path):
        return json.loads(self.get(path))

    def env(self):
        """The environment the CLI and `tidelog.sync()` find this server and key in."""
        return {**os.environ, "TIDELOG_BASE_URL": self.url, "TIDELOG_API_KEY": self.key,
                "TIDELOG_CONFIG_DIR": str(Path(self.proc.args[-1]) / "no-login")}


@pytest.fixture
def server(tmp_path):
    data = tmp_path / "server-data"
    bin_ = tidelog_bin()
    key = subprocess.run([bin_, "admin", "create-key", "--account", "py", "--data", str(data)],
                         check=True, capture_output=True, text=True).stdout.strip()
    proc = subprocess.Popen([bin_, "serve", "--addr", "127.0.0.1:0", "--data", str(data)],
                            stdout=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    assert line.startswith("tidelog server listening on "), line
    srv = Server(line.split(" on ", 1)[1].strip(), key, proc)
    yield srv
    proc.kill()
    proc.wait()


def cli(*args, env=None, cwd=None, check=True):
    """Runs the tidelog CLI; returns the completed process (stdout as text)."""
    p = subprocess.run([tidelog_bin(), *map(str, args)], env=env, cwd=cwd, capture_output=True, text=True)
    if check and p.returncode != 0:
        raise AssertionError(f"tidelog {' '.join(map(str, args))} exited {p.returncode}:\n{p.stdout}\n{p.stderr}")
    return p


def python(script, cwd, env=None, **kw):
    """Starts `script` in a fresh interpreter (the one running the tests) in `cwd`."""
    return subprocess.Popen([sys.executable, "-c", script], cwd=cwd, env=env or os.environ.copy(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


def states(folder):
    """Run id → state, as `tidelog ls` reports them."""
    out = cli("ls", folder).stdout.splitlines()[1:]
    return {cols[1]: cols[3] for cols in (line.split() for line in out)}


def history(server, run_id):
    return server.json(f"/api/v1/runs/{run_id}/history")["rows"]


def wait_for(cond, what, timeout=20.0):
    """Polls `cond` until it is true or the deadline passes."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")
