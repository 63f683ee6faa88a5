"""Command-line entry points called by the workflow's rules (``python -m robrepro <command>``).

Each command is a thin job: parse the JSON spec the rule passes, call the library, write outputs
atomically. Logs go to stderr, which the rules redirect to their log files.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import torch


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
    from .config import ConfigError, load

    try:
        cfg = load(*a.files, config_dir=a.config_dir)
    except ConfigError as err:
        print(err, file=sys.stderr)
        sys.exit(2)
    print(f"valid ({cfg['tier']} tier)")


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

    s = sub.add_parser("validate-config", help="merge and validate config files")
    s.add_argument("files", nargs="+")
    s.add_argument("--config-dir", default=None, help="folder holding papers/<paper>[.<tier>].yaml (default: the first file's folder)")
    s.set_defaults(func=cmd_validate)

    a = p.parse_args(argv)
    a.func(a)


if __name__ == "__main__":
    main()
