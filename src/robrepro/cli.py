"""Command-line entry points called by the workflow's rules (``python -m robrepro <command>``).

Each command is a thin job: parse the JSON spec the rule passes, call the library, write outputs
atomically. Logs go to stderr, which the rules redirect to their log files.
"""

from __future__ import annotations

import argparse
import json
import sys
import time


def _spec(text: str) -> dict:
    return json.loads(text)


def _manifest(spec: dict, given: str | None) -> str | None:
    """The data manifest a job reads: given, else where the path grammar puts it for the job's tier
    (relative to the working directory, as every path of the workflow)."""
    if given or "tier" not in spec:
        return given
    from .paths import Paths

    return Paths(spec["tier"]).data(spec["data"]["name"])


def cmd_prepare_data(a) -> None:
    from .data import prepare
    from .results import provenance, write_result

    t0 = time.time()
    manifest = prepare(a.dataset, a.source, a.root, a.mirror or [], download=not a.no_download)
    print(f"[data] {a.dataset}: {manifest['source']} ({manifest.get('obtained', 'generated')})", file=sys.stderr)
    job = {"dataset": a.dataset, "source": a.source, "root": a.root, "mirrors": a.mirror or [], "download": not a.no_download}
    write_result(a.out, "data", manifest, provenance(spec=job, seed=0, device="cpu", data_source=manifest["source"], started=t0))


def cmd_train(a) -> None:
    from .engine import Interrupted, train
    from .results import reading

    spec = _spec(a.spec)
    try:
        # The result records the sha256 of the model it writes and of the manifest of its data.
        with reading(model=a.model_out, data=_manifest(spec, a.manifest)):
            doc = train(
                spec,
                data_root=a.data_root,
                model_out=a.model_out,
                result_out=a.result_out,
                checkpoint=a.checkpoint,
                device=a.device,
                threads=a.threads,
                progress_bar=not a.no_progress,
            )
    except Interrupted as stop:
        sys.exit(stop.code)
    print(f"[train] done: {json.dumps(doc['final'])}", file=sys.stderr)


def cmd_evaluate(a) -> None:
    from .evaluations import JobContext, registry
    from .results import reading

    spec = _spec(a.spec)
    kind = registry()[spec["kind"]]
    if a.threads:
        import torch  # here, not at the top: table, figure and report jobs never import it

        torch.set_num_threads(a.threads)
    ctx = JobContext(spec, model_path=a.model, data_root=a.data_root, device=a.device, out=a.out, partial=a.partial, progress=not a.no_progress)
    # The result records the sha256 of the model it evaluated and of the manifest of its data.
    with reading(model=a.model, data=_manifest(spec, a.manifest)):
        ctx.write(kind.fn(ctx))
    if a.partial:
        # The result is written: resumable state could only resume a finished job.
        from pathlib import Path

        Path(a.partial).unlink(missing_ok=True)


def cmd_report(a) -> None:
    from .plan import builder
    from .results import ResultError

    outputs = {p.rsplit(".", 1)[1]: p for p in a.out}
    params = _spec(a.params) if a.params else {}
    try:
        builder(a.builder)(a.inputs, outputs, **params)
    except ResultError as err:
        # A stale or out-of-range result: the message says which file and what to re-run.
        print(f"[report] refused: {err}", file=sys.stderr)
        sys.exit(2)


def cmd_validate(a) -> None:
    from pathlib import Path

    from .config import ConfigError, load, user_files

    # The folder Snakemake composes from: config/ of the project when run from its root, as Snakemake is.
    config_dir = Path(a.config_dir or ("config" if Path("config", "config.yaml").is_file() else Path(a.files[0]).parent))
    files = user_files(a.files, config_dir)
    try:
        cfg = load(*files, config_dir=config_dir)
    except ConfigError as err:
        print(err, file=sys.stderr)
        sys.exit(2)
    print(f"valid ({cfg['tier']} tier): composed {' + '.join(map(str, files))}, under the paper files of {config_dir / 'papers'}")


def cmd_cost(a) -> None:
    from . import cost, runtimes
    from .plan import Plan

    plan = Plan(cost.load_config(a.configfile, tier=a.tier, papers=a.paper, config_dir=a.config_dir))
    outputs = runtimes.outputs(a.out_dir or plan.paths.root)
    if a.from_csv:
        result = {"rows": cost.read_rows(a.from_csv)}
    else:
        result = cost.estimate(
            plan, device=a.device, budget=a.budget, threads=a.threads, match=a.match, deadline=a.time_limit, log=lambda m: print(m, file=sys.stderr)
        )
        print(cost.write_outputs(plan, result, outputs, safety=a.safety))
    if a.check:
        cmp = cost.compare(plan, result["rows"], a.check, column=a.check_column)
        for p in cmp["pairs"]:
            print(f"{p['key']}: predicted {p['predicted']:.1f} s, measured {p['measured']:.1f} s, ratio {p['ratio']:.2f}")
        print(f"within 2x: {cmp['within_2x']} of {cmp['n']} jobs ({cmp['fraction']:.0%})")
        if cmp["warm"]:
            print(f"left out: {len(cmp['warm'])} jobs that ran in a warm worker (compare a run made with ROBREPRO_NO_WARM=1)")


def cmd_selfcheck(a) -> None:
    from . import cost
    from .plan import Plan
    from .selfcheck import selfcheck

    t0 = time.perf_counter()
    plan = Plan(cost.load_config(a.configfile, tier=a.tier, config_dir=a.config_dir))
    steps = selfcheck(plan, device=a.device, reference=a.reference, step_limit=a.step_limit, only=a.only, log=lambda m: print(m, flush=True))
    counts = {k: sum(s.status == k for s in steps) for k in ("ok", "FAIL", "skipped")}
    print(
        f"[selfcheck] {counts['ok']} passed, {counts['FAIL']} failed, {counts['skipped']} skipped of {len(steps)} steps in {time.perf_counter() - t0:.0f} s",
        flush=True,
    )
    if a.cost_limit > 0:
        paper = Plan(cost.load_config(a.configfile, tier="paper", config_dir=a.config_dir))
        result = cost.estimate(paper, device=a.device, budget=a.cost_budget, match=a.cost_match, deadline=a.cost_limit, log=lambda m: print(m, flush=True))
        print(cost.summary(paper, result), flush=True)
    sys.exit(1 if counts["FAIL"] else 0)


def main(argv=None) -> None:
    import robrepro  # noqa: F401  (the torchvision shim must run before any torchvision import)

    p = argparse.ArgumentParser(prog="robrepro", description=__doc__)
    sub = p.add_subparsers(dest="cmd", required=True)

    s = sub.add_parser("prepare-data", help="make a dataset available and write its manifest")
    s.add_argument("--dataset", required=True)
    s.add_argument("--source", default="real", choices=["real", "synthetic"])
    s.add_argument("--root", required=True)
    s.add_argument("--mirror", action="append")
    s.add_argument("--no-download", action="store_true")
    s.add_argument("--out", required=True)
    s.set_defaults(func=cmd_prepare_data)

    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--spec", required=True, help="JSON job spec (from the workflow plan)")
    common.add_argument("--data-root", required=True)
    common.add_argument("--device", default="auto")
    common.add_argument("--threads", type=int, default=None)
    common.add_argument("--manifest", default=None, help="the data manifest the job reads (default: results/<tier>/data/<dataset>.json)")

    s = sub.add_parser("train", parents=[common], help="train one run (resumes from its checkpoint)")
    s.add_argument("--model-out", required=True)
    s.add_argument("--result-out", required=True)
    s.add_argument("--checkpoint", required=True)
    s.add_argument("--no-progress", action="store_true")
    s.set_defaults(func=cmd_train)

    s = sub.add_parser("evaluate", parents=[common], help="run one evaluation job (its kind is named in the spec)")
    s.add_argument("--model", default=None, help="the trained model, for kinds that evaluate one")
    s.add_argument("--out", required=True)
    s.add_argument("--partial", default=None, help="where a long job may keep resumable state")
    s.add_argument("--no-progress", action="store_true")
    s.set_defaults(func=cmd_evaluate)

    s = sub.add_parser("report", help="build a table or figure from result files")
    s.add_argument("builder", help="the target's builder, module:function (from the plan)")
    s.add_argument("--inputs", nargs="*", default=[])
    s.add_argument("--params", default=None, help="JSON keyword arguments")
    s.add_argument("--out", nargs="+", required=True, help="output files (extension selects the format)")
    s.set_defaults(func=cmd_report)

    s = sub.add_parser("validate-config", help="compose and validate the configuration Snakemake would run with these --configfile files")
    s.add_argument("files", nargs="+")
    s.add_argument(
        "--config-dir",
        default=None,
        help="the workflow's configuration folder: config.yaml, loaded first, and papers/<paper>[.<tier>].yaml (default: ./config, else the first file's folder)",
    )
    s.set_defaults(func=cmd_validate)

    s = sub.add_parser("cost", help="time a few steps of every distinct job of a tier here; predict every job's time and memory")
    s.add_argument("configfile", nargs="*", default=["config/config.yaml"], help="configuration files, merged left to right")
    s.add_argument("--tier", default=None, help="tier to cost (default: the configuration's)")
    s.add_argument("--paper", action="append", help="cost only this paper (repeatable)")
    s.add_argument("--match", default=None, help="cost only the jobs whose key (e.g. eval/<paper>/<run>/attack/pgd) this regex finds")
    s.add_argument("--config-dir", default=None, help="folder holding papers/<paper>[.<tier>].yaml (default: the first file's folder)")
    s.add_argument("--device", default="auto")
    s.add_argument("--threads", type=int, default=None, help="torch threads of every timing (default: each job's resources.<kind>.threads)")
    s.add_argument("--budget", type=float, default=2.0, help="seconds of the longest timing run of a job")
    s.add_argument("--time-limit", type=float, default=None, help="seconds after which no further job is timed (those left are listed)")
    s.add_argument("--safety", type=float, default=3.0, help="time limits = predicted time x this (runtimes.json)")
    s.add_argument("--out-dir", default=None, help="results root: writes <dir>/cost/jobs.csv, cost.md, runtimes.json (default: results/<tier>)")
    s.add_argument("--check", default=None, metavar="DIR", help="compare with the benchmark files of a finished run under DIR")
    s.add_argument("--check-column", default="s", help="benchmark column compared: s (wall time) or cpu_time")
    s.add_argument("--from-csv", default=None, metavar="JOBS_CSV", help="time nothing: compare the predictions of an earlier jobs.csv (with --check)")
    s.set_defaults(func=cmd_cost)

    s = sub.add_parser("selfcheck", help="every job kind for a few steps on the GPU and the CPU, compared; then the paper tier's cost table")
    s.add_argument("configfile", nargs="*", default=["config/config.yaml"], help="configuration files, merged left to right")
    s.add_argument("--tier", default="paper", help="tier whose job kinds, models and objectives are checked")
    s.add_argument("--config-dir", default=None, help="folder holding papers/<paper>[.<tier>].yaml (default: the first file's folder)")
    s.add_argument("--device", default="auto", help="device under test (auto: CUDA when present)")
    s.add_argument("--reference", default="cpu", help="device it is compared with")
    s.add_argument("--step-limit", type=float, default=60.0, help="seconds each step may take")
    s.add_argument("--only", default=None, help="run only the steps whose name this regex finds")
    s.add_argument("--cost-limit", type=float, default=300.0, help="seconds for the paper tier's cost table (0: none)")
    s.add_argument("--cost-budget", type=float, default=0.25, help="seconds of the longest timing run of a job in the cost table")
    s.add_argument("--cost-match", default=None, help="cost only the jobs whose key this regex finds")
    s.set_defaults(func=cmd_selfcheck)

    a = p.parse_args(argv)
    a.func(a)


if __name__ == "__main__":
    main()
