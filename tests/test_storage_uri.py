"""``--storage``, results archives and report inputs as object-store URIs, against a real
S3-compatible server (moto's server mode) started by the test on 127.0.0.1.

Credentials and the endpoint come from the standard AWS variables
(``AWS_ENDPOINT_URL`` and friends), as on a cloud cluster; the experiment
directory then lives only in the bucket: the run writes there, is
interrupted, has its Tune state checked there and resumes from there, and
``rkl-bench report s3://...`` and ``results export`` read it back.
"""

from __future__ import annotations

import json
import os

import pytest

from rkl_bench import cli
from rkl_bench.service.run import run_experiment
from test_service_run import ALGOS, EVAL_STEPS, INTERRUPT_FLAG, config_copy, interrupt_after_first_trial
from test_service_support import write_smoke_datasets

moto_server = pytest.importorskip("moto.server", reason="moto[server] is a test dependency (requirements.txt)")
boto3 = pytest.importorskip("boto3")

BUCKET = "rkl-bench-test"


@pytest.fixture
def s3(monkeypatch):
    """A moto S3 server on loopback with one empty bucket; yields a boto3 client for checking objects."""
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    for name, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                        "AWS_DEFAULT_REGION": "us-east-1", "AWS_ENDPOINT_URL": f"http://{host}:{port}"}.items():
        monkeypatch.setenv(name, value)
    client = boto3.client("s3", endpoint_url=f"http://{host}:{port}")
    client.create_bucket(Bucket=BUCKET)
    yield client
    server.stop()


def objects(client, prefix: str) -> dict[str, bytes]:
    """Every object under ``prefix``, by key relative to it."""
    found = {}
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix):
        for item in page.get("Contents", []):
            found[item["Key"][len(prefix):]] = client.get_object(Bucket=BUCKET, Key=item["Key"])["Body"].read()
    return found


def trial_rows(files: dict[str, bytes]) -> dict[str, list[dict]]:
    """Result rows of each trial (by algorithm) among the objects of an experiment directory."""
    rows = {}
    for key, body in files.items():
        if key.endswith("/result.json") and key.count("/") == 1:
            lines = [json.loads(line) for line in body.decode().splitlines() if line.strip()]
            lines = [row for row in lines if "normalized_score" in row]
            if lines:
                rows[lines[0]["algo"]] = lines
    return rows


@pytest.mark.slow  # about two minutes on 2 busy cores: three trials one at a time, twice
def test_a_grid_writes_to_s3_resumes_from_there_and_reports_from_there(tmp_path, s3, monkeypatch, capsys):
    write_smoke_datasets()
    monkeypatch.chdir(tmp_path)
    config = config_copy(tmp_path, name="s3grid", resources={"cpus": 2, "threads": 1})  # one trial at a time
    storage = f"s3://{BUCKET}/results"

    monkeypatch.setenv(INTERRUPT_FLAG, "1")
    first = run_experiment(config, storage=storage, verbose=0, callbacks=[interrupt_after_first_trial()])
    monkeypatch.delenv(INTERRUPT_FLAG)
    assert first.interrupted and 1 <= first.finished < 3
    assert str(first.experiment_dir) == f"s3://{BUCKET}/results/s3grid"
    assert not (tmp_path / "s3:").exists() and not list(tmp_path.glob("*results*")), "nothing may land on local disk"

    files = objects(s3, "results/s3grid/")
    record = json.loads(files["rkl_bench_experiment.json"])
    assert record["config"]["name"] == "s3grid" and "tuner.pkl" in record["tune_state"]
    done_before = {algo: rows for algo, rows in trial_rows(files).items() if [r["step"] for r in rows] == EVAL_STEPS}
    assert 1 <= len(done_before) < 3

    # The digest check reads the bucket: a state file changed there is refused before Ray starts.
    state_key = next(k for k in files if k.startswith("experiment_state-") and k.endswith(".json"))
    s3.put_object(Bucket=BUCKET, Key=f"results/s3grid/{state_key}", Body=files[state_key] + b" ")
    code = cli.main(["run", str(config), "--storage", storage, "--resume", "--no-report"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("error: ") == 1, err
    assert f"s3://{BUCKET}/results/s3grid/{state_key} is not Tune state this service wrote" in err
    s3.put_object(Bucket=BUCKET, Key=f"results/s3grid/{state_key}", Body=files[state_key])

    code = cli.main(["run", str(config), "--storage", storage, "--resume"])
    out = capsys.readouterr().out
    assert code == 0, out
    rows = trial_rows(objects(s3, "results/s3grid/"))
    assert set(rows) == ALGOS
    assert all([r["step"] for r in trial] == EVAL_STEPS for trial in rows.values())
    for algo, before in done_before.items():
        assert rows[algo] == before, f"{algo} was re-run"
    assert f"experiment directory: s3://{BUCKET}/results/s3grid" in out
    assert (tmp_path / "reports" / "s3grid" / "table2.csv").is_file()

    # Without --resume the experiment in the bucket is refused, as a local one would be.
    assert cli.main(["run", str(config), "--storage", storage]) == 2
    assert (f"error: experiment directory s3://{BUCKET}/results/s3grid already exists; pass --resume"
            in capsys.readouterr().err)

    # The report reads the bucket; so does the exporter, which writes an archive there.
    code = cli.main(["report", f"s3://{BUCKET}/results/s3grid", "--out", str(tmp_path / "from-s3"), "--seeds", "1"])
    assert code == 0, capsys.readouterr().err
    table = (tmp_path / "from-s3" / "table2.csv").read_text().splitlines()
    header = table[0].split(",")
    cells = [dict(zip(header, line.split(","))) for line in table[1:] if "hopper-random-expert" in line]
    assert {c["algo"] for c in cells if c["n_seeds"] == "1"} == ALGOS

    archive = f"s3://{BUCKET}/archives/s3grid"
    assert cli.main(["results", "export", f"s3://{BUCKET}/results/s3grid", "--out", archive]) == 0
    assert "3 trial(s) added" in capsys.readouterr().out
    held = objects(s3, "archives/s3grid/")
    assert set(held) == {"archive.json", "rows.jsonl"}
    assert len(json.loads(held["archive.json"])["trials"]) == 3
    assert len(held["rows.jsonl"].decode().splitlines()) == 3 * len(EVAL_STEPS)
    # ... and an archive in the bucket resumes a grid with nothing left to run.
    summary = run_experiment(config, storage=tmp_path / "elsewhere", resume=archive, verbose=0)
    assert (summary.archived, summary.trials) == (3, 3)


@pytest.mark.parametrize("storage, message", [
    ("s3:///prefix", "--storage s3:///prefix: a s3:// URI needs a bucket"),
    ("nosuch://bucket/prefix", "--storage nosuch://bucket/prefix: not a location pyarrow can open"),
    ("s3://no-such-bucket/prefix", "--storage s3://no-such-bucket/prefix: bucket no-such-bucket does not exist"),
])
def test_bad_storage_uris_are_one_error_line_before_ray_starts(tmp_path, s3, capsys, storage, message):
    write_smoke_datasets()
    config = config_copy(tmp_path, name="bad")
    code = cli.main(["run", str(config), "--storage", storage])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith(f"error: {message}") and err.count("\n") == 1, err
    assert set(objects(s3, "")) == set(), "nothing may be written"
    import sys

    ray = sys.modules.get("ray")
    assert ray is None or not ray.is_initialized()


def test_an_unreachable_endpoint_is_one_error_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:1")
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(name, "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    code = cli.main(["report", "s3://bucket/results/x", "--out", str(tmp_path / "r")])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: report input s3://bucket/results/x: cannot reach the bucket bucket"), err
    assert err.count("\n") == 1 and not (tmp_path / "r").exists()


def test_report_of_an_empty_prefix_says_so(tmp_path, s3, capsys):
    code = cli.main(["report", f"s3://{BUCKET}/nothing/here", "--out", str(tmp_path / "r")])
    err = capsys.readouterr().err
    assert code == 2 and err == f"error: report input s3://{BUCKET}/nothing/here: nothing there (no result rows, record or archive)\n"


def test_local_paths_and_file_uris_are_plain_paths(tmp_path, monkeypatch):
    from rkl_bench.storage import location, mirror

    monkeypatch.setenv("HOME", str(tmp_path))
    assert location("~/results").is_local and location("~/results").local == tmp_path / "results"
    here = location(f"file://{tmp_path}/results")
    assert here.is_local and here.local == tmp_path / "results"
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "rows.jsonl").write_text("{}\n")
    with mirror([f"file://{tmp_path}/results", tmp_path / "results"]) as paths:
        assert paths == [tmp_path / "results", tmp_path / "results"]  # read in place, nothing copied
