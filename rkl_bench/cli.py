"""The ``rkl-bench`` command.

Thin by design: each verb parses its flags and calls one function of the
layers below. Heavy imports (torch, gymnasium, ray) happen inside the verb, so
``rkl-bench --help`` is instant and a bad flag fails before anything loads.
Every :class:`~rkl_bench.errors.RklBenchError` becomes one ``error:`` line and
exit status 2.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any, Callable, Sequence

from rkl_bench.errors import RklBenchError

EXIT_USAGE = 2


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {value}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, got {text}")
    return value


def _names(text: str) -> list[str]:
    from rkl_bench.service.grid_part import names_list

    return _as_argument(names_list, text)


def _duration(text: str) -> float:
    from rkl_bench.service.time_limit import parse_duration

    return _as_argument(parse_duration, text)


def _as_argument(parse: Callable[[str], Any], text: str) -> Any:
    """``parse(text)``, its ValueError as argparse's usage error (one line, exit 2)."""
    try:
        return parse(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected zero or more, got {value}")
    return value


# ----------------------------------------------------------------- datasets
def _cmd_datasets_info(args: argparse.Namespace) -> int:
    from rkl_bench.data.info import dataset_info, format_info

    info = dataset_info(args.dataset, d4rl_dir=args.d4rl_dir)
    print(json.dumps(info, indent=2) if args.json else format_info(info))
    return 0


def _cmd_datasets_list(args: argparse.Namespace) -> int:
    from rkl_bench.forge.catalogue import format_catalogue

    print(format_catalogue())
    return 0


def _cmd_datasets_make(args: argparse.Namespace) -> int:
    from rkl_bench.forge.make import make_datasets

    jobs = args.jobs if args.jobs is not None else (os.cpu_count() or 1)
    paths = make_datasets(args.names, profile=args.profile, seed=args.seed, force=args.force, jobs=jobs)
    for path in paths:
        print(path)
    return 0


def _cmd_datasets_export(args: argparse.Namespace) -> int:
    if not args.minari:
        raise RklBenchError("datasets export needs a target format: pass --minari (the only one so far)")
    from rkl_bench.forge.minari_export import export_minari

    done = export_minari(args.name, dataset_id=args.dataset_id, out=args.out, force=args.force)
    print(f"{'replaced' if done.replaced else 'wrote'} Minari dataset {done.dataset_id} "
          f"({done.episodes:,} episodes, {done.steps:,} steps): {done.path}")
    where = "" if args.out is None else f" with MINARI_DATASETS_PATH={done.root}"
    print(f"load it{where} with minari.load_dataset({done.dataset_id!r}), or here as minari:{done.dataset_id}")
    return 0


# -------------------------------------------------------------------- forge
def _cmd_forge_train(args: argparse.Namespace) -> int:
    from rkl_bench.forge.train_policy import train_behaviour_policy

    train_behaviour_policy(
        args.env,
        total_steps=args.steps,
        seed=args.seed,
        work_dir=args.work_dir,
        fast=not args.plain,
    )
    return 0


def _cmd_forge_export(args: argparse.Namespace) -> int:
    from rkl_bench.forge.export import export_policies

    out = export_policies(args.env, work_dir=args.work_dir, episodes=args.episodes, status=args.status)
    print((out / "card.json").read_text())
    return 0


# -------------------------------------------------------------------- train
def _cmd_train(args: argparse.Namespace) -> int:
    import torch

    from rkl_bench.training.single_run import TrainSpec, train

    if args.threads is not None:
        torch.set_num_threads(args.threads)
    spec = TrainSpec(
        algo=args.algo,
        dataset=args.dataset,
        seed=args.seed,
        steps=args.steps,
        eval_every=args.eval_every,
        eval_episodes=args.eval_episodes,
        out_dir=Path(args.out),
        evaluate=not args.no_eval,
        d4rl_dir=args.d4rl_dir,
        hyperparams=_with_precision(_parse_overrides(args.set), args.precision),
        checkpoint_every=args.checkpoint_every,
        device=args.device,
    )
    summary = train(spec)
    if not summary.already_finished:
        score = (summary.last_row or {}).get("normalized_score")
        shown = "" if score is None else f", normalized score {score:.1f}"
        print(f"done: {summary.step} steps{shown}; results in {spec.out_dir / 'metrics.jsonl'}")
    return 0


def _with_precision(hyperparams: dict[str, object], precision: str | None) -> dict[str, object]:
    """``--precision`` as the ``precision`` hyper-parameter (refused beside a different ``--set precision=``)."""
    if precision is None:
        return hyperparams
    if hyperparams.get("precision", precision) != precision:
        raise RklBenchError(f"--precision {precision} and --set precision={hyperparams['precision']} disagree; give one")
    return {**hyperparams, "precision": precision}


def _parse_overrides(items: Sequence[str] | None) -> dict[str, object]:
    """``--set key=value`` pairs, values parsed as YAML scalars (numbers, bools).

    YAML 1.1 reads ``3e-4`` (no dot) as a string; such values are taken as
    the float they spell, so ``--set actor_lr=3e-4`` works.
    """
    import yaml

    overrides: dict[str, object] = {}
    for item in items or ():
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise RklBenchError(f"--set expects key=value, got {item!r}")
        parsed = yaml.safe_load(value)
        if isinstance(parsed, str):
            try:
                parsed = float(parsed)
            except ValueError:
                pass
        overrides[key.strip()] = parsed
    return overrides


# ---------------------------------------------------------------------- run
def _cmd_run(args: argparse.Namespace) -> int:
    from rkl_bench.service.run import run_experiment

    summary = run_experiment(
        args.config, address=args.address, resume=args.resume, storage=args.storage, dashboard=args.dashboard,
        connect_timeout=args.connect_timeout, learners=args.learners, datasets=args.datasets, time_limit=args.time_limit,
        export_to=args.export_to, cpus=args.cpus,
    )
    if summary.archive is not None:
        left = summary.trials - summary.archived - summary.deferred
        ran = "nothing left to run" if summary.archived == summary.trials else f"{left} started here"
        later = f", {summary.deferred} deferred by --time-limit" if summary.deferred else ""
        print(f"archive {summary.archive}: {summary.archived} of {summary.trials} seed runs held there at the start, "
              f"{ran}{later}")
    if summary.archived + summary.deferred < summary.trials:
        print(f"experiment directory: {summary.experiment_dir}")
    if summary.finished and not args.no_report:
        from rkl_bench.report import build_report
        from rkl_bench.storage import mirror

        finished_here = summary.finished > summary.archived
        sources = [p for p, used in ((summary.archive, summary.archived), (summary.experiment_dir, finished_here)) if used]
        out = Path(args.report_dir) if args.report_dir else Path("reports") / summary.experiment_dir.name
        with mirror(sources, "report input") as local_sources:  # an object store's result files, copied
            paths = build_report(local_sources, out, expected_seeds=summary.seeds, smoke_of=summary.smoke_of)
        _print_warnings(paths.warnings)
        print(f"report: {paths.index_html.resolve()} (tables: {paths.table2_md.resolve()})")
        if summary.smoke_of is not None:
            from rkl_bench.report.smoke import smoke_summary_line

            print(smoke_summary_line(summary.smoke_of))
    if summary.errored:
        first = f"; first: {summary.errors[0]}" if summary.errors else ""
        print(
            f"error: {summary.errored} of {summary.trials} trials failed (see error.txt in their trial directories{first}); "
            "run the same command with --resume to retry them from their last checkpoints",
            file=sys.stderr,
        )
        return 1
    if summary.interrupted:
        print("interrupted: finished trials are kept; run the same command with --resume to go on", file=sys.stderr)
        return 130
    if summary.deferred:
        export = "" if args.export_to else " export this run into the archive (rkl-bench results export) and"
        print(f"deferred: {summary.deferred} seed run(s) would have ended after --time-limit;{export} run again with "
              "--resume ARCHIVE for them")
    return 0


# --------------------------------------------------------------------- tune
def _cmd_tune(args: argparse.Namespace) -> int:
    from rkl_bench.report.search_figures import draw_search_summary
    from rkl_bench.service.search import run_search

    summary = run_search(args.config, address=args.address, resume=args.resume, storage=args.storage,
                         announce=lambda line: print(line, flush=True), draw=draw_search_summary)
    print(f"experiment directory: {summary.experiment_dir}")
    if summary.work_dir is not None and str(summary.work_dir) != str(summary.experiment_dir):  # a bucket's search
        from rkl_bench.service.study_remote import publish_names

        copied = (f"copied to {summary.experiment_dir}: {publish_names(summary.copied)}" if summary.copied
                  else f"not copied to {summary.experiment_dir} this time; --resume copies it")
        print(f"working copy: {summary.work_dir} ({copied})")
    print(f"study: {summary.study_name} in {summary.storage} (optuna-dashboard {summary.storage.removeprefix('journal:')})")
    print(
        f"trials: {summary.finished} of {summary.num_samples} finished "
        f"({summary.complete} complete, {summary.pruned} stopped early, {summary.failed} failed)"
    )
    if summary.best is not None:
        params = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in summary.best.params.items())
        print(f"best: trial {summary.best.number}, objective {summary.best.value:.2f} ({params})")
        print(f"best config: {summary.best_config} (rkl-bench run accepts it)")
    for figure in summary.figures:
        print(f"figure: {figure}")
    if summary.interrupted:
        print(
            f"interrupted: {summary.interrupted} trial(s) unfinished; run the same command with --resume "
            "to re-run them and go on",
            file=sys.stderr,
        )
        return 130
    if summary.best is None:
        print("error: no trial finished all its (dataset, seed) pairs; see error.txt in the trial directories", file=sys.stderr)
        return 1
    return 0


# --------------------------------------------------------------------- toys
def _cmd_toy(args: argparse.Namespace) -> int:
    from rkl_bench.toys import run_toy

    result = run_toy(args.which, out_dir=Path(args.out), seed=args.seed)
    print(json.dumps(result, indent=2))
    return 0


# ------------------------------------------------------------------ results
def _cmd_results_export(args: argparse.Namespace) -> int:
    from rkl_bench.training.archive import export_results

    done = export_results(args.experiment, args.out)
    print(f"{done.out}: {done.added} trial(s) added, {done.kept} already there, {done.unfinished} unfinished left out "
          f"({done.bytes / 1e6:.2f} MB, no checkpoints)")
    return 0


def _cmd_results_status(args: argparse.Namespace) -> int:
    from rkl_bench.service.grid_status import grid_status, markdown_table

    if args.markdown and (args.time_limit is not None or args.slots is not None or args.running):
        raise RklBenchError("results status --markdown prints the score table only; leave out --time-limit, --slots "
                            "and --running")
    lines = markdown_table(args.archive, args.last_evals) if args.markdown else grid_status(
        args.archive, time_limit=args.time_limit, slots=args.slots, running=args.running, last_evals=args.last_evals)
    for line in lines:
        print(line)
    return 0


# ------------------------------------------------------------------- report
def _cmd_report(args: argparse.Namespace) -> int:
    from rkl_bench.storage import mirror

    # Object-store inputs (s3://...) are read from a local copy of their result files.
    with mirror(args.experiment, "report input") as inputs:
        return _report(args, inputs)


def _report(args: argparse.Namespace, inputs: list[Path]) -> int:
    from rkl_bench.layout import SEARCH_SUMMARY_FILE
    from rkl_bench.report import build_report
    from rkl_bench.report.search_report import build_search_report

    experiment = inputs[0]
    if (experiment / SEARCH_SUMMARY_FILE).is_file():  # an `rkl-bench tune` experiment: the search's own report
        if len(inputs) > 1:
            raise RklBenchError(f"{experiment} is a search; report it alone (grids beside it go in --references)")
        print(build_search_report(experiment, args.out or Path("reports") / experiment.resolve().name, args.references))
        return 0
    if args.references:
        raise RklBenchError(f"--references is for the report of a search, and {experiment} holds no {SEARCH_SUMMARY_FILE}")
    from rkl_bench.report.tuning_sets import parse_tuned_on

    tuned_on = parse_tuned_on(args.tuned_on)
    paths = build_report(
        inputs,
        args.out or Path("reports") / experiment.resolve().name,
        final_mode=args.final,
        k=args.k,
        expected_seeds=args.seeds,
        toys_dir=args.toys,
        bootstrap_reps=args.bootstrap,
        seed=args.seed,
        strict=args.strict,
        tuned_on=tuned_on,
    )
    _print_warnings(paths.warnings)
    print(paths.index_html)
    return 0


def _print_warnings(lines: Sequence[str]) -> None:
    for line in lines:
        print(f"warning: {line}", file=sys.stderr)


# ------------------------------------------------------------------- parser
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rkl-bench",
        description="Offline RL from mixed datasets: TD3+RKL and the baselines of its Table II.",
    )
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="VERB")

    # datasets
    datasets = verbs.add_parser("datasets", help="inspect, list and make datasets")
    dverbs = datasets.add_subparsers(dest="datasets_verb", required=True, metavar="ACTION")
    info = dverbs.add_parser("info", help="summary of one dataset (file, D4RL name, minari:ID, forge name)")
    info.add_argument("dataset", help="path, D4RL name, minari:<id> or forge-v5/<env>-<kind>")
    info.add_argument("--json", action="store_true", help="print JSON instead of text")
    info.add_argument("--d4rl-dir", default=None, help="where D4RL hdf5 files lie (default $D4RL_DATASET_DIR or ~/.d4rl/datasets)")
    info.set_defaults(func=_cmd_datasets_info)
    dlist = dverbs.add_parser("list", help="the forge's datasets and whether they are made")
    dlist.set_defaults(func=_cmd_datasets_list)
    make = dverbs.add_parser("make", help="forge datasets from the shipped behaviour policies")
    make.add_argument("names", nargs="+", help="forge dataset names, e.g. forge-v5/hopper-random-expert")
    make.add_argument("--profile", default=None, help="size profile: tiny, quick or full (default: the one the name's prefix says)")
    make.add_argument("--seed", type=_non_negative_int, default=0)
    make.add_argument("--force", action="store_true", help="remake even if the cached file exists")
    make.add_argument("--jobs", type=_positive_int, default=None,
                      help="files made at once, one process each (default: the machine's CPUs; rollouts are single-threaded)")
    make.set_defaults(func=_cmd_datasets_make)
    export = dverbs.add_parser("export", help="write a forge dataset (mixtures included) as a local Minari dataset")
    export.add_argument("name", help="forge dataset name, e.g. forge-v5/hopper-random-expert (made with `datasets make`)")
    export.add_argument("--minari", action="store_true", help="export to a local Minari dataset (required: the only format)")
    export.add_argument("--dataset-id", default=None,
                        help="Minari id (default rkl-forge[-<profile>]/<env>/<kind>-v0, never Farama's namespaces)")
    export.add_argument("--out", default=None, help="Minari datasets folder to write under (default $MINARI_DATASETS_PATH or ~/.minari/datasets)")
    export.add_argument("--force", action="store_true", help="replace an existing dataset of that id")
    export.set_defaults(func=_cmd_datasets_export)

    # forge
    forge = verbs.add_parser("forge", help="train the forge's behaviour policies")
    fverbs = forge.add_subparsers(dest="forge_verb", required=True, metavar="ACTION")
    ftrain = fverbs.add_parser("train-policy", help="train (or resume) SAC on a MuJoCo v5 env")
    ftrain.add_argument("env", help="halfcheetah, hopper or walker2d")
    ftrain.add_argument("--steps", type=_positive_int, default=1_000_000)
    ftrain.add_argument("--seed", type=_non_negative_int, default=0)
    ftrain.add_argument("--work-dir", default=None, help="checkpoints and replay buffer (default ~/.cache/rkl_bench/sac/<env>)")
    ftrain.add_argument("--plain", action="store_true", help="use the plain eager update instead of the compiled one")
    ftrain.set_defaults(func=_cmd_forge_train)
    fexport = fverbs.add_parser("export", help="choose medium/expert/ladder snapshots, evaluate them, ship them with a card")
    fexport.add_argument("env", help="halfcheetah, hopper or walker2d")
    fexport.add_argument("--work-dir", default=None, help="the SAC run to export (default ~/.cache/rkl_bench/sac/<env>)")
    fexport.add_argument("--episodes", type=_positive_int, default=20, help="evaluation episodes per policy (default 20)")
    fexport.add_argument("--status", default="provisional", choices=["provisional", "final"],
                         help="provisional while SAC training is still under way")
    fexport.set_defaults(func=_cmd_forge_export)

    # train
    train = verbs.add_parser("train", help="one learner on one dataset and seed, no Ray")
    train.add_argument("--algo", required=True, help="td3_rkl, td3_bc, bc, ...")
    train.add_argument("--dataset", required=True, help="path, D4RL name, minari:<id> or forge name")
    train.add_argument("--seed", type=_non_negative_int, default=0)
    train.add_argument("--steps", type=_positive_int, default=1_000_000, help="gradient steps")
    train.add_argument("--eval-every", type=_positive_int, default=5000)
    train.add_argument("--eval-episodes", type=_positive_int, default=10)
    train.add_argument("--checkpoint-every", type=_positive_int, default=None, help="default: --eval-every")
    train.add_argument("--out", required=True, help="run directory: metrics.jsonl, checkpoints")
    train.add_argument("--no-eval", action="store_true", help="train without an environment")
    train.add_argument("--d4rl-dir", default=None)
    train.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a hyper-parameter (repeatable)")
    train.add_argument("--threads", type=_positive_int, default=None,
                       help="torch threads (default: one per core). 2 on an idle 2-core machine gives "
                            "1.1-1.5x the updates/s of 1; use 1 when other jobs share the cores (docs/speed.md)")
    train.add_argument("--device", default="cpu", metavar="DEVICE",
                       help="cpu (default), cuda or cuda:N: where the learner trains (evaluation stays on the CPU)")
    train.add_argument("--precision", choices=("fp32", "bf16"), default=None,
                       help="the fast path's matrix products: fp32 (default) or bf16 with fp32 accumulation, "
                            "where the CPU has AVX512-BF16/AMX or the GPU bf16 (elsewhere: said, and fp32; docs/speed.md)")
    train.set_defaults(func=_cmd_train)

    # run
    run = verbs.add_parser("run", help="an experiment grid from tune_configs/*.yaml on Ray Tune")
    run.add_argument("config", help="experiment spec, e.g. tune_configs/quick.yaml")
    run.add_argument("--address", default=None, help="join this Ray cluster (default: start a local Ray on this machine)")
    run.add_argument("--resume", nargs="?", const=True, default=False, metavar="ARCHIVE",
                     help="go on with an interrupted experiment (finished trials are kept); with a results archive "
                          "(after CONFIG: run CONFIG --resume results/NAME), run only the trials it does not hold, "
                          "also on a machine without the experiment directory")
    run.add_argument("--storage", default=None,
                     help="where experiment directories live: a directory or an s3://, gs://, file:// URI (default ./ray_results; docs/cluster.md)")
    run.add_argument("--dashboard", action="store_true", help="start Ray's dashboard on 127.0.0.1 (local Ray only)")
    run.add_argument("--connect-timeout", type=_positive_float, default=60.0, metavar="SECONDS",
                     help="with --address: give up joining the cluster after this long (default 60)")
    run.add_argument("--learners", type=_names, default=[], metavar="NAME[,NAME]",
                     help="run only these of the config's learners (its algorithms keys, e.g. td3_bc,td3_rkl@tuned): "
                          "a part of the grid; with --resume ARCHIVE of the whole grid it runs the part's missing trials "
                          "and its export merges back (docs/cluster.md)")
    run.add_argument("--datasets", type=_names, default=[], metavar="NAME[,NAME]",
                     help="run only these of the config's datasets (as written there): a part of the grid, as --learners")
    run.add_argument("--time-limit", type=_duration, default=None, metavar="DURATION",
                     help="with --resume ARCHIVE: start only the trials expected, at the archive's measured rates, to end "
                          "within DURATION of now (2.5h, 150m, 1h55m, 600s); the others are deferred to a later run (a session, "
                          "a Slurm allocation or a spot machine with a known end; docs/cluster.md)")
    run.add_argument("--export-to", default=None, metavar="ARCHIVE",
                     help="export each trial's rows into this results archive (local) as it finishes, and once more when "
                          "the run ends: a new archive, or one of this grid (the --resume ARCHIVE one); a machine that "
                          "goes then loses only the running trials (docs/cluster.md)")
    run.add_argument("--cpus", type=_positive_int, default=None, metavar="N",
                     help="CPUs of the local Ray (default: all of this machine's); fewer leave cores to other work, "
                          "e.g. a second part of a grid beside a running one, and --time-limit plans on as many")
    run.add_argument("--report-dir", default=None, help="where the report goes when the run ends (default reports/<experiment name>)")
    run.add_argument("--no-report", action="store_true", help="do not write a report when the run ends")
    run.set_defaults(func=_cmd_run)

    # tune
    tune = verbs.add_parser("tune", help="an Optuna (TPE) search of one learner's hyper-parameters on Ray Tune")
    tune.add_argument("config", help="search spec, e.g. tune_configs/optuna_lambda.yaml")
    tune.add_argument("--address", default=None, help="join this Ray cluster (default: start a local Ray on this machine)")
    tune.add_argument("--resume", action="store_true",
                      help="go on with the study (finished trials count; unfinished ones are re-run; raise num_samples to extend)")
    tune.add_argument("--storage", default=None,
                      help="where experiment directories live: a local or NFS directory (default ./ray_results), or an "
                           "s3://, gs:// URI (the study and summaries are then kept on this machine too, under "
                           "$RKL_BENCH_STUDY_DIR or ~/.cache/rkl_bench/studies, and copied there; docs/cluster.md)")
    tune.set_defaults(func=_cmd_tune)

    # toys
    toy = verbs.add_parser("toy", help="the paper's toy experiments (Fig. 2, Fig. 3)")
    toy.add_argument("which", choices=["fig2", "fig3"])
    toy.add_argument("--out", default="reports/toys")
    toy.add_argument("--seed", type=_non_negative_int, default=0)
    toy.set_defaults(func=_cmd_toy)

    # report
    results = verbs.add_parser("results", help="compact results archives: finished trials' result rows, no checkpoints")
    rverbs = results.add_subparsers(dest="results_verb", required=True, metavar="VERB")
    rexport = rverbs.add_parser("export", help="archive an experiment's finished trials (merges into an archive at --out)")
    rexport.add_argument("experiment", help="experiment directory of `rkl-bench run`")
    rexport.add_argument("--out", required=True, help="archive directory, e.g. results/table2_mixtures (commit it)")
    rexport.set_defaults(func=_cmd_results_export)
    rstatus = rverbs.add_parser("status", help="where a grid stands from its archive: cells held and their scores, "
                                                "commits, work and time left, what fits in --time-limit")
    rstatus.add_argument("archive", help="results archive of a grid, e.g. results/table2_mixtures")
    rstatus.add_argument("--time-limit", type=_duration, default=None, metavar="DURATION",
                         help="also list the trials that fit in DURATION (2.5h, 1h55m) at the archive's rates, in the "
                              "grid's order, as `run --time-limit` would plan them")
    rstatus.add_argument("--slots", type=_positive_int, default=None, metavar="N",
                         help="trials run at once for the time left and --time-limit (default: this machine's CPUs "
                              "over a trial's, as a local run)")
    rstatus.add_argument("--running", nargs="+", default=[], metavar="EXPERIMENT_DIR",
                         help="experiment directories of parts in flight (their --storage): list their unfinished "
                              "trials (step, speed, time left, newest checkpoint) and plan around them")
    rstatus.add_argument("--markdown", action="store_true",
                         help="print only the score table, as Markdown: each cell the mean of the seeds held and "
                              "every seed's score in brackets (for a document or an issue)")
    rstatus.add_argument("--last-evals", type=_positive_int, default=1, metavar="K",
                         help="score each seed by the mean of its last K evaluations (the report's --final last-evals "
                              "--k K) instead of its final evaluation (default 1)")
    rstatus.set_defaults(func=_cmd_results_status)

    report = verbs.add_parser("report", help="Table II, figures and an HTML page from an experiment's results")
    report.add_argument("experiment", nargs="+",
                        help="experiment directories (Tune trial dirs with result.json, runs with metrics.jsonl) and/or "
                             "results archives (`rkl-bench results export`); several are merged into one report")
    report.add_argument("--out", default=None, help="report directory (default reports/<experiment name>); an older report there is replaced")
    report.add_argument("--references", nargs="+", default=[], metavar="EXPERIMENT_DIR",
                        help="for a search (`rkl-bench tune`) directory: grids scored by the search's objective beside its best trial")
    report.add_argument("--final", choices=["last-evals", "final-episodes"], default="last-evals",
                        help="final score per seed: mean of the last K evaluations (default), or the final evaluation alone")
    report.add_argument("--k", type=_positive_int, default=10, help="K: evaluations averaged, or episodes expected with --final final-episodes (default 10, the paper's)")
    report.add_argument("--seeds", type=_positive_int, default=5, help="seeds a complete cell has (default 5, the paper's)")
    report.add_argument("--toys", default="reports/toys", help="directory of toy figures (*.png) to include, if it exists")
    report.add_argument("--bootstrap", type=_positive_int, default=2000, help="bootstrap resamples for confidence intervals")
    report.add_argument("--seed", type=_non_negative_int, default=0, help="seed of the bootstrap")
    report.add_argument("--strict", action="store_true",
                        help="exit 2 (and write nothing) if any result line is unreadable, instead of warning")
    report.add_argument("--tuned-on", action="append", default=[], metavar="LABEL=BEST_CONFIG",
                        help="a column tuned by a search (td3_rkl@tuned=reports/optuna_rkl_mixtures/best_config.yaml): "
                             "its cells on the search's datasets are marked in-sample and a held-out average is added "
                             "(repeatable)")
    report.set_defaults(func=_cmd_report)

    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except RklBenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("interrupted: progress up to the last checkpoint is kept; run the same command to resume", file=sys.stderr)
        return 130


def entry() -> None:
    """The ``rkl-bench`` command: :func:`main`, then exit with its status.

    After a join given up (``--connect-timeout``), Ray's connecting thread is
    still inside Ray's C++ client; letting the interpreter finalise around it
    can abort the process (``std::bad_alloc``, status -6 instead of 2; seen
    once in a full test run on a loaded machine). So the command then leaves
    without finalising, once its output is flushed.
    """
    code = main()
    ray_runtime = sys.modules.get("rkl_bench.service.ray_runtime")  # loaded only by verbs that join a Ray
    if ray_runtime is not None and ray_runtime.connect_abandoned():
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)


if __name__ == "__main__":
    entry()
