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
from rkl_bench.service.study_remote import study_dir_root
from test_service_run import ALGOS, EVAL_STEPS, INTERRUPT_FLAG, config_copy, interrupt_after_first_trial
from test_service_search import interrupt_after_first_rung, smoke_data, staged_data, write_yaml
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
    # moto keeps its buckets in this process, across servers: each test starts from an empty store.
    import urllib.request

    urllib.request.urlopen(urllib.request.Request(f"http://{host}:{port}/moto-api/reset", method="POST")).close()
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
    # The page names the experiment by its URI, not by the temporary copy the report read.
    page = (tmp_path / "from-s3" / "index.html").read_text()
    assert f"s3://{BUCKET}/results/s3grid" in page and "rkl_bench_mirror_" not in page and "/tmp/" not in page
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


@pytest.mark.parametrize("verb", ["run", "tune"])
@pytest.mark.parametrize("storage, message", [
    ("s3:///prefix", "--storage s3:///prefix: a s3:// URI needs a bucket"),
    ("nosuch://bucket/prefix", "--storage nosuch://bucket/prefix: not a location pyarrow can open"),
    ("s3://no-such-bucket/prefix", "--storage s3://no-such-bucket/prefix: bucket no-such-bucket does not exist"),
])
def test_bad_storage_uris_are_one_error_line_before_ray_starts(tmp_path, s3, capsys, storage, message, verb):
    write_smoke_datasets()
    config = config_copy(tmp_path, name="bad") if verb == "run" else write_yaml(tmp_path, smoke_data(name="bad"))
    code = cli.main([verb, str(config), "--storage", storage])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith(f"error: {message}") and err.count("\n") == 1, err
    assert set(objects(s3, "")) == set(), "nothing may be written"
    assert not study_dir_root().exists(), "no working copy of a search either"
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


# ------------------------------------------------------------------ searches
def bucket_study(client, key: str, tmp_path) -> list:
    """The trials of the study in the bucket's ``optuna.db`` at ``key`` (read from a local copy)."""
    import optuna

    copy = tmp_path / f"bucket-{len(list(tmp_path.glob('bucket-*')))}.db"
    copy.write_bytes(client.get_object(Bucket=BUCKET, Key=key)["Body"].read())
    storage = optuna.storages.RDBStorage(f"sqlite:///{copy}")
    try:
        (summary,) = storage.get_all_studies()
        return optuna.load_study(study_name=summary.study_name, storage=storage).get_trials()
    finally:
        storage.engine.dispose()


def search_rows(files: dict[str, bytes]) -> dict[int, list[dict]]:
    """Result rows of every Tune trial among an experiment directory's objects, by Optuna trial number."""
    rows: dict[int, list[dict]] = {}
    for key, body in sorted(files.items()):
        if key.endswith("/params.json") and key.count("/") == 1:
            number = json.loads(body)["optuna_trial"]
            text = files.get(key.replace("params.json", "result.json"), b"").decode()
            rows.setdefault(number, []).extend(json.loads(line) for line in text.splitlines() if line.strip())
    return rows


@pytest.mark.slow  # about three minutes on 2 busy cores: two staged trials, stopped, then resumed elsewhere
def test_a_search_in_s3_is_interrupted_and_resumed_on_a_new_machine(tmp_path, s3, monkeypatch, capsys):
    """``rkl-bench tune --storage s3://...``: the trials, the study and the summaries end up in the bucket;
    after a Ctrl-C the working copy is deleted (another machine), and ``--resume`` downloads the study,
    goes on from the interrupted trial's checkpoint in the bucket and finishes the search there."""
    import shutil

    from optuna.trial import TrialState

    from rkl_bench.service.search import run_search

    write_smoke_datasets()
    monkeypatch.chdir(tmp_path)
    data = staged_data(name="s3search")
    data["search"]["num_samples"] = 2
    config = write_yaml(tmp_path, data)
    storage = f"s3://{BUCKET}/results"
    prefix = "results/s3search/"

    monkeypatch.setenv(INTERRUPT_FLAG, "1")
    first = run_search(config, storage=storage, verbose=0, callbacks=[interrupt_after_first_rung()])
    assert first.interrupted >= 1, first
    assert str(first.experiment_dir) == f"s3://{BUCKET}/results/s3search"
    assert first.work_dir.parent == study_dir_root().resolve() and (first.work_dir / "optuna.db").is_file()
    assert not list(tmp_path.glob("*ray_results*")) and not (tmp_path / "s3:").exists()
    files = objects(s3, prefix)
    assert {"optuna.db", "rkl_bench_search.json", "trials.csv", "search_summary.json"} <= set(files)
    before = bucket_study(s3, prefix + "optuna.db", tmp_path)
    left = {t.number: t for t in before if t.state == TrialState.RUNNING}
    assert left and 1 <= len(before) <= 2
    old_rows = search_rows(files)
    assert any(old_rows.get(n) for n in left), "an interrupted trial had reported (and checkpointed) rows"

    # A new machine: no working copy. Without --resume the experiment in the bucket is refused.
    shutil.rmtree(first.work_dir)
    assert cli.main(["tune", str(config), "--storage", storage]) == 2
    assert (f"error: experiment directory s3://{BUCKET}/results/s3search already exists; pass --resume"
            in capsys.readouterr().err)
    code = cli.main(["tune", str(config), "--storage", storage, "--resume"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert f"study: downloaded s3://{BUCKET}/{prefix}optuna.db ({len(before)} trial(s)) to {first.work_dir / 'optuna.db'}" in out
    assert "trials: 2 of 2 finished" in out
    assert f"working copy: {first.work_dir} (copied to s3://{BUCKET}/results/s3search: optuna.db" in out

    files = objects(s3, prefix)
    after = bucket_study(s3, prefix + "optuna.db", tmp_path)
    counted = [t for t in after if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    assert len(counted) == 2 and not [t for t in after if t.state == TrialState.RUNNING]
    reruns = {t.user_attrs["rerun_of"]: t for t in after if "rerun_of" in t.user_attrs}
    assert set(reruns) == set(left)
    rows = search_rows(files)
    whole = [(0, 30), (1, 30), (0, 60), (1, 60)]  # (seed, step): both pairs to each rung
    resumed = 0
    for number, old in left.items():
        rerun = reruns[number]
        assert rerun.params == old.params and rerun.state.is_finished()
        if not old_rows.get(number):
            continue
        resumed += 1
        checkpoint = rerun.user_attrs["resume_from"]
        assert checkpoint.startswith(f"s3://{BUCKET}/{prefix}trial_") and "/checkpoint_" in checkpoint
        key = checkpoint[len(f"s3://{BUCKET}/"):] + "/search_progress.json"
        covered = sum(len(scores) for scores in json.loads(s3.get_object(Bucket=BUCKET, Key=key)["Body"].read())["scores"])
        earlier, later = old_rows[number][:covered], rows[rerun.number]
        # Went on from the bucket's checkpoint: what it had trained is not trained again.
        assert covered >= 1 and [(r["seed"], r["step"]) for r in earlier + later] == whole[:len(earlier) + len(later)]
    assert resumed >= 1

    trials_csv = files["trials.csv"].decode().splitlines()
    assert len(trials_csv) == 1 + len(after)
    summary = json.loads(files["search_summary.json"])
    assert len(summary["trials"]) == len(after) and summary["num_samples"] == 2
    if any(t.state == TrialState.COMPLETE for t in after):
        assert "best_config.yaml" in files
        assert f"rkl-bench run s3://{BUCKET}/results/s3search/best_config.yaml\n" in files["best_config.yaml"].decode()
        assert summary["best"]["number"] in {t.number for t in after if t.state == TrialState.COMPLETE}
    assert any(k.startswith("figures/") and k.endswith(".png") for k in files)

    # The search's report reads the bucket and names it.
    code = cli.main(["report", f"s3://{BUCKET}/results/s3search", "--out", str(tmp_path / "search-report")])
    assert code == 0, capsys.readouterr().err
    page = (tmp_path / "search-report" / "index.html").read_text()
    assert f"s3://{BUCKET}/results/s3search" in page and "rkl_bench_mirror_" not in page


def make_study(path, values: list[float], record: dict | None = None) -> None:
    """An Optuna study ``s`` in SQLite file ``path`` with one COMPLETE trial per value."""
    import optuna

    from rkl_bench.service.study_attrs import RECORD_ATTR

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(storage=f"sqlite:///{path}", study_name="s", direction="maximize")
    study.set_user_attr(RECORD_ATTR, record or {"search": "one"})
    for value in values:
        study.add_trial(optuna.trial.create_trial(
            params={"x": value}, distributions={"x": optuna.distributions.FloatDistribution(0, 10)}, value=value))
    del study


def test_resume_goes_on_from_the_study_copy_that_holds_the_other(tmp_path, s3):
    """The working copy against the bucket's: the one holding the other is used (the bucket's is downloaded
    over an older working copy), and copies that each hold trials the other lacks are refused."""
    from rkl_bench.errors import RklBenchError
    from rkl_bench.service.study_remote import RemoteStudy, read_view
    from rkl_bench.storage import location

    said: list[str] = []
    remote = RemoteStudy.of(location(f"s3://{BUCKET}/results/x"))
    assert remote.work_dir == study_dir_root().resolve() / f"s3_{BUCKET}_results_x"
    with pytest.raises(RklBenchError, match="nothing to resume: no study at s3://rkl-bench-test/results/x/optuna.db"):
        remote.fetch("s", said.append)

    remote.work_dir.mkdir(parents=True)
    make_study(remote.study_file, [1.0, 2.0])
    remote.upload_study()  # a consistent snapshot, readable as a study
    remote.study_file.unlink()
    remote.fetch("s", said.append)  # a new machine
    assert said[-1].startswith("study: downloaded s3://rkl-bench-test/results/x/optuna.db (2 trial(s))")
    assert read_view(remote.study_file, "s", "here").trials == 2

    make_study(tmp_path / "newer.db", [1.0, 2.0, 3.0])  # another machine went on: the bucket is newer
    s3.put_object(Bucket=BUCKET, Key="results/x/optuna.db", Body=(tmp_path / "newer.db").read_bytes())
    remote.fetch("s", said.append)
    assert "the bucket's copy s3://rkl-bench-test/results/x/optuna.db (3 trial(s)) is newer" in said[-1]
    assert read_view(remote.study_file, "s", "here").trials == 3

    (remote.work_dir / "optuna.db").unlink()
    make_study(remote.study_file, [1.0, 2.0, 3.0, 4.0])  # this machine's last upload failed: the working copy is newer
    remote.fetch("s", said.append)
    assert f"the working copy {remote.study_file} (4 trial(s)) is newer than the bucket's" in said[-1]
    assert read_view(remote.study_file, "s", "here").trials == 4

    make_study(tmp_path / "diverged.db", [1.0, 2.0, 3.5, 4.0, 5.0])  # trial 2 finished otherwise there
    s3.put_object(Bucket=BUCKET, Key="results/x/optuna.db", Body=(tmp_path / "diverged.db").read_bytes())
    with pytest.raises(RklBenchError, match="each hold finished trials the other lacks"):
        remote.fetch("s", said.append)
    assert read_view(remote.study_file, "s", "here").trials == 4, "the working copy is left as it was"
    assert not list(remote.work_dir.glob(".optuna.db*")), "no download left behind"

    make_study(tmp_path / "other.db", [1.0], record={"search": "another"})
    s3.put_object(Bucket=BUCKET, Key="results/x/optuna.db", Body=(tmp_path / "other.db").read_bytes())
    with pytest.raises(RklBenchError, match="studies of different searches"):
        remote.fetch("s", said.append)


def test_a_new_search_refuses_a_working_copy_left_for_its_location(tmp_path, s3, capsys):
    """The bucket holds no experiment, but this machine holds a working copy of one there (its uploads
    failed?): a new search does not overwrite it; one error line before Ray, nothing written."""
    from rkl_bench.service.study_remote import RemoteStudy
    from rkl_bench.storage import location

    write_smoke_datasets()
    config = write_yaml(tmp_path, smoke_data(name="left"))
    remote = RemoteStudy.of(location(f"s3://{BUCKET}/results/left"))
    remote.work_dir.mkdir(parents=True)
    make_study(remote.study_file, [1.0])
    code = cli.main(["tune", str(config), "--storage", f"s3://{BUCKET}/results"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1, err
    assert err.startswith(f"error: {remote.work_dir} holds a working copy of a search of s3://{BUCKET}/results/left")
    assert set(objects(s3, "")) == set()


# ------------------------------------------------------------------ archives
def test_torn_archive_uploads_are_named_and_a_fresh_export_mends_the_first(tmp_path, s3, capsys):
    """An upload stopped between rows.jsonl and archive.json: rows.jsonl alone (a first export), or a new
    rows.jsonl beside the older archive.json (a merge). Readers say so in one line naming the URI; an
    export into a rows-only prefix writes the whole archive."""
    from test_results_archive import rows, write_experiment

    one = write_experiment(tmp_path / "one", {"a": rows("td3_bc", 0)})
    two = write_experiment(tmp_path / "two", {"b": rows("td3_bc", 1)})
    archive = f"s3://{BUCKET}/archives/grid"
    assert cli.main(["results", "export", str(one), "--out", archive]) == 0
    first = objects(s3, "archives/grid/")
    assert json.loads(first["archive.json"])["rows_sha256"]

    # A first upload that stopped before archive.json.
    s3.delete_object(Bucket=BUCKET, Key="archives/grid/archive.json")
    capsys.readouterr()
    assert cli.main(["report", archive, "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert err == (f"error: {archive}: rows.jsonl without archive.json: an archive upload that stopped before its last "
                   f"file; export it again (`rkl-bench results export EXPERIMENT --out` this location)\n")
    assert not (tmp_path / "r").exists()
    assert cli.main(["results", "export", str(one), "--out", archive]) == 0  # mends it
    assert objects(s3, "archives/grid/") == first

    # A merge whose new rows.jsonl went up, but not its archive.json.
    merged = f"s3://{BUCKET}/archives/merged"
    assert cli.main(["results", "export", str(one), "--out", merged]) == 0
    assert cli.main(["results", "export", str(two), "--out", merged]) == 0
    s3.put_object(Bucket=BUCKET, Key="archives/grid/rows.jsonl", Body=objects(s3, "archives/merged/")["rows.jsonl"])
    capsys.readouterr()
    assert cli.main(["report", archive, "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(
        f"error: {archive}: rows.jsonl is not the one archive.json was written with (its SHA-256 differs)"), err
    assert "rkl_bench_mirror_" not in err and not (tmp_path / "r").exists()
    # `run --resume ARCHIVE` reads the archive in place: the same line.
    write_smoke_datasets()
    assert cli.main(["run", str(config_copy(tmp_path, name="grid")), "--resume", archive,
                     "--storage", str(tmp_path / "runs")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "rows.jsonl is not the one archive.json was written with" in err, err


def test_a_report_from_s3_names_the_bucket_not_its_local_copy(tmp_path, s3, capsys):
    """The page and the warnings of a report of a bucket's experiment name its URIs."""
    from test_results_archive import rows, write_experiment

    from rkl_bench.storage import location, upload_dir

    exp = write_experiment(tmp_path / "grid", {"a": rows("td3_bc", 0), "b": rows("td3_bc", 1)})
    with open(exp / "b" / "result.json", "a") as handle:
        handle.write('{"algo": "td3_bc", "dataset": "forge-v5/hop')  # a torn last line
    upload_dir(exp, location(f"s3://{BUCKET}/results/grid"))
    code = cli.main(["report", f"s3://{BUCKET}/results/grid", "--out", str(tmp_path / "r"), "--seeds", "2"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert f"warning: s3://{BUCKET}/results/grid/b/result.json:3: torn last line skipped" in captured.err
    page = (tmp_path / "r" / "index.html").read_text()
    assert f"s3://{BUCKET}/results/grid" in page and f"s3://{BUCKET}/results/grid/b/result.json:3" in page
    assert "rkl_bench_mirror_" not in page and "rkl_bench_mirror_" not in captured.err


def test_interrupted_trials_go_on_from_checkpoints_in_the_bucket(tmp_path, s3, monkeypatch):
    """The furthest logged checkpoint of an interrupted trial is found in the bucket and named by its URI;
    a trial given that URI downloads the checkpoint directory and reads it locally."""
    from types import SimpleNamespace

    from rkl_bench.service import search_trial
    from rkl_bench.service.search_resume import furthest_checkpoint
    from rkl_bench.storage import location

    def trial_dir(number: int, tune_id: str, checkpoints: dict[int, int], logged: int) -> None:
        prefix = f"results/s/trial_{number:04d}_{tune_id}"
        for index, evaluations in checkpoints.items():
            progress = {"stage": 1, "pair": 0, "checkpoint_pair": 0, "scores": [[0.0] * evaluations], "stage_scores": []}
            s3.put_object(Bucket=BUCKET, Key=f"{prefix}/checkpoint_{index:06d}/checkpoint.pt", Body=b"state %d" % index)
            s3.put_object(Bucket=BUCKET, Key=f"{prefix}/checkpoint_{index:06d}/search_progress.json",
                          Body=json.dumps(progress).encode())
        rows = [{"step": i, "checkpoint_dir_name": f"checkpoint_{i:06d}"} for i in range(logged)]
        s3.put_object(Bucket=BUCKET, Key=f"{prefix}/result.json", Body="".join(json.dumps(r) + "\n" for r in rows).encode())

    trial_dir(3, "aaa", {19: 20}, logged=20)
    trial_dir(7, "bbb", {5: 26, 6: 27}, logged=6)  # checkpoint_000006 was written, its row never logged
    trials = [SimpleNamespace(number=3, user_attrs={"tune_trial_id": "aaa"}),
              SimpleNamespace(number=7, user_attrs={"tune_trial_id": "bbb", "rerun_of": 3}),
              SimpleNamespace(number=9, user_attrs={"tune_trial_id": "ccc", "rerun_of": 7})]
    source, checkpoint = furthest_checkpoint(trials[2], trials, location(f"s3://{BUCKET}/results/s"))
    assert source.number == 7 and str(checkpoint) == f"s3://{BUCKET}/results/s/trial_0007_bbb/checkpoint_000005"

    monkeypatch.setattr(search_trial.tune, "get_checkpoint", lambda: None)  # no restart within the session
    with search_trial._checkpoint_folder(str(checkpoint)) as folder:
        assert (folder / "checkpoint.pt").read_bytes() == b"state 5"
        assert json.loads((folder / "search_progress.json").read_text())["scores"] == [[0.0] * 26]
        downloaded = folder
    assert not downloaded.exists(), "the download lives as long as the trial reads it"


def test_a_reports_mirror_copies_every_seeds_lambdas_and_no_checkpoints():
    """A trial of seeds trained together keeps each seed's lambda(s) in ``lambdas_seed<k>.npz``: a report
    of a bucket's experiment must see them (Fig. 4 and the archive's histograms per seed)."""
    from rkl_bench.storage import _mirrored

    assert _mirrored("trial_1/lambdas_seed0.npz") and _mirrored("trial_1/lambdas_seed12.npz")
    assert _mirrored("trial_1/lambdas.npz") and _mirrored("trial_1/result.json")
    assert not _mirrored("trial_1/lambdas_seedx.npz") and not _mirrored("trial_1/checkpoint_000001/checkpoint_seed0.pt")


def test_export_to_with_an_object_store_is_one_error_before_anything_is_written(tmp_path, s3, capsys):
    # Tune uploads the driver's result files on its own schedule: an export on a clock could miss rows.
    write_smoke_datasets()
    config = config_copy(tmp_path, name="s3grid")
    code = cli.main(["run", str(config), "--storage", f"s3://{BUCKET}/results", "--export-to", str(tmp_path / "archive")])
    err = capsys.readouterr().err
    assert code == 2 and "--export-to needs a local --storage" in err and err.count("\n") == 1
    assert objects(s3, "results/") == {} and not (tmp_path / "archive").exists()
