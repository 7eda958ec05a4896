"""A real two-node Ray cluster started with the ``ray start`` CLI, token authentication on
as Ray defaults it, joined with ``rkl-bench run --address`` as a user would.

The cluster is the test's own: its own ports, its own temporary directory,
and its own ``HOME``, whose ``~/.ray/auth_token`` (made by ``ray
get-auth-token --generate``) is what makes ``ray start --head`` turn token
authentication on. The worker node gets ``RAY_AUTH_MODE=token``, as
docs/cluster.md tells a newcomer; the driver gets nothing: ``rkl-bench run``
must find the token and turn token mode on itself. At the end the test stops
exactly the processes it started (their process groups).
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from test_service_run import ALGOS, EVAL_STEPS, config_copy, result_rows, trial_dirs
from test_service_support import write_smoke_datasets

REPO = Path(__file__).resolve().parents[1]
RAY = Path(sys.executable).parent / "ray"
AUTH_VARS = ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH", "RAY_ADDRESS", "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER")
NODE_PORTS = ("--node-manager-port", "--object-manager-port", "--dashboard-agent-listen-port",
              "--dashboard-agent-grpc-port", "--metrics-export-port", "--runtime-env-agent-port")
WORKER_PORTS = 60


def free_block(size: int) -> int:
    """The first of ``size`` consecutive free TCP ports on loopback."""
    for _ in range(200):
        base = random.randrange(20000, 60000 - size)
        try:
            sockets = []
            for port in range(base, base + size):
                s = socket.socket()
                sockets.append(s)
                s.bind(("", port))
            return base
        except OSError:
            continue
        finally:
            for s in sockets:
                s.close()
    raise RuntimeError("no free port block")


def node_args(base: int) -> list[str]:
    """A node's own ports: ``base`` .. ``base + 5`` for its services, then a worker range."""
    args = [item for i, flag in enumerate(NODE_PORTS) for item in (flag, str(base + i))]
    low = base + len(NODE_PORTS)
    return [*args, "--min-worker-port", str(low), "--max-worker-port", str(low + WORKER_PORTS - 1)]


def stop_group(proc: subprocess.Popen, grace: float = 30.0) -> None:
    """SIGTERM a ``ray start --block`` and its node's processes (its process group), SIGKILL after ``grace``."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


def wait_for(log: Path, text: str, proc: subprocess.Popen, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if text in log.read_text(errors="replace"):
            return
        if proc.poll() is not None:
            break
        time.sleep(1)
    raise AssertionError(f"{log.name}: no {text!r} within {timeout:g} s:\n{log.read_text(errors='replace')[-3000:]}")


@pytest.fixture
def token_cluster(tmp_path):
    """``(address, env, temp_dir)`` of a head and a worker node, one CPU each, token auth on."""
    home = tmp_path / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in AUTH_VARS}
    env.update(HOME=str(home), RAY_USAGE_STATS_ENABLED="0",
               PYTHONPATH=os.pathsep.join([str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])]))
    subprocess.run([str(RAY), "get-auth-token", "--generate"], env=env, check=True, capture_output=True, timeout=120)
    assert (home / ".ray" / "auth_token").is_file()
    temp_dir = tempfile.mkdtemp(prefix="rkltok", dir="/tmp")  # short: Ray's socket paths live under it
    base = free_block(2 * (len(NODE_PORTS) + WORKER_PORTS) + 1)
    port = base
    address = f"127.0.0.1:{port}"
    started = []
    try:
        head_log = tmp_path / "head.log"
        head = subprocess.Popen(
            [str(RAY), "start", "--head", "--block", "--port", str(port), "--node-ip-address", "127.0.0.1",
             "--temp-dir", temp_dir, "--include-dashboard", "false", "--num-cpus", "1", *node_args(base + 1)],
            env=env, stdout=head_log.open("w"), stderr=subprocess.STDOUT, start_new_session=True, cwd=tmp_path)
        started.append(head)
        wait_for(head_log, "Ray runtime started", head, 180)
        worker_log = tmp_path / "worker.log"
        worker = subprocess.Popen(
            [str(RAY), "start", "--block", "--address", address, "--node-ip-address", "127.0.0.1",
             "--num-cpus", "1", *node_args(base + 1 + len(NODE_PORTS) + WORKER_PORTS)],
            env={**env, "RAY_AUTH_MODE": "token"}, stdout=worker_log.open("w"), stderr=subprocess.STDOUT,
            start_new_session=True, cwd=tmp_path)
        started.append(worker)
        wait_for(worker_log, "Ray runtime started", worker, 180)
        yield address, env, temp_dir
    finally:
        for proc in reversed(started):
            stop_group(proc)
        shutil.rmtree(temp_dir, ignore_errors=True)


def rkl_bench(args: list[str], env: dict[str, str], cwd: Path, timeout: float = 900) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "rkl_bench.cli", *args], env=env, cwd=cwd, capture_output=True,
                          text=True, timeout=timeout)


@pytest.mark.slow
def test_smoke_grid_joins_a_token_cluster_and_runs_on_both_nodes(tmp_path, token_cluster):
    address, env, _ = token_cluster
    write_smoke_datasets()
    config = config_copy(tmp_path, name="token-cluster")
    env = {**env, "D4RL_DATASET_DIR": os.environ["D4RL_DATASET_DIR"]}

    # Token auth is really on: a driver without the token, and one with another, are one error line each.
    no_token = rkl_bench(["run", str(config), "--address", address, "--storage", str(tmp_path / "r0")],
                         {**env, "HOME": str(tmp_path)}, tmp_path, 120)
    assert no_token.returncode == 2, no_token.stderr
    assert no_token.stderr.strip().splitlines()[-1] == (
        f"error: the Ray cluster at {address} uses token authentication and this driver has no token; "
        "give this driver the cluster's token: RAY_AUTH_TOKEN=<token>, RAY_AUTH_TOKEN_PATH=<file>, or the head's "
        "token in ~/.ray/auth_token (`ray get-auth-token` on the head prints it; docs/cluster.md)")
    wrong = rkl_bench(["run", str(config), "--address", address, "--storage", str(tmp_path / "r1")],
                      {**env, "RAY_AUTH_TOKEN": "f" * 32}, tmp_path, 120)
    assert wrong.returncode == 2 and wrong.stderr.count("error: ") == 1, wrong.stderr
    assert f"error: the Ray cluster at {address} refused the token from RAY_AUTH_TOKEN" in wrong.stderr
    assert not (tmp_path / "r0").exists() and not (tmp_path / "r1").exists()

    done = rkl_bench(["run", str(config), "--address", address, "--storage", str(tmp_path / "results")], env, tmp_path)
    assert done.returncode == 0, done.stderr[-4000:]
    trials = trial_dirs(tmp_path / "results" / "token-cluster")
    assert set(trials) == ALGOS
    assert all([row["step"] for row in result_rows(folder)] == EVAL_STEPS for folder in trials.values())
    nodes = {result_rows(folder)[-1]["node_id"] for folder in trials.values()}

    listing = subprocess.run(
        [sys.executable, "-c", "import json, ray; ray.init(address='%s', log_to_driver=False); "
         "print(json.dumps([n['NodeID'] for n in ray.nodes() if n['Alive']]))" % address],
        env={**env, "RAY_AUTH_MODE": "token"}, capture_output=True, text=True, timeout=180)
    cluster_nodes = set(json.loads(listing.stdout.strip().splitlines()[-1]))
    assert len(cluster_nodes) == 2 and nodes == cluster_nodes, (nodes, cluster_nodes)


@pytest.fixture
def silent_port():
    """A loopback port that accepts TCP and says nothing (no Ray is asked anything)."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        yield f"127.0.0.1:{silent.getsockname()[1]}"


@pytest.mark.parametrize("variables, message", [
    ({"RAY_AUTH_MODE": "token"}, "error: RAY_AUTH_MODE=token, but no token was found; give this driver the cluster's token"),
    ({"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": "/nonexistent/token"},
     "error: RAY_AUTH_TOKEN_PATH=/nonexistent/token: no such file; point it at the cluster's token file or unset it"),
])
def test_a_token_that_is_not_there_is_one_error_line_before_joining(tmp_path, silent_port, variables, message):
    write_smoke_datasets()
    env = {k: v for k, v in os.environ.items() if k not in AUTH_VARS}
    env.update(HOME=str(tmp_path), PYTHONPATH=os.pathsep.join([str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])]),
               **variables)
    done = rkl_bench(["run", str(config_copy(tmp_path, name="tokenless")), "--address", silent_port,
                      "--storage", str(tmp_path / "results")], env, tmp_path, 120)
    errors = [line for line in done.stderr.splitlines() if line.startswith("error: ")]
    assert done.returncode == 2 and len(errors) == 1 and errors[0].startswith(message), done.stderr
    assert "Traceback" not in done.stderr and not (tmp_path / "results").exists()
