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

    try:
        doc = train(
            _spec(a.spec),
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


class _EvalJob:
    """What every evaluation job starts with: its spec, device, the trained model and the test split."""

    def __init__(self, a):
        from . import data as D
        from .engine import load_model, resolve_device

        self.started = time.time()
        if a.threads:
            torch.set_num_threads(a.threads)
        self.out = a.out
        self.spec, self.device = _spec(a.spec), resolve_device(a.device)
        torch.manual_seed(self.spec["seed"])
        self.model, self.train_spec = load_model(a.model, self.device)
        ds = self.spec["data"]
        self.x, self.y = D.load_split(ds["name"], "test", source=ds["source"], root=a.data_root, limit=ds.get("test_limit"), seed=ds.get("synthetic_seed", 0))

    def write(self, kind: str, payload: dict) -> None:
        from .results import provenance, write_result

        s, ts = self.spec, self.train_spec
        head = {"paper": s["paper"], "run": s["run"], "experiment": ts.get("experiment"), "model": ts["model"]}
        write_result(
            self.out, kind, {**head, **payload}, provenance(spec=s, seed=s["seed"], device=self.device, data_source=s["data"]["source"], started=self.started)
        )


def cmd_attack(a) -> None:
    from .attacks import make_attack, predict, robust_accuracy
    from .models.odenet import forward_nfe

    job = _EvalJob(a)
    spec, model = job.spec, job.model
    nfe = []

    def record_nfe():
        v = forward_nfe(model)
        if v is not None:
            nfe.append(v)

    res = robust_accuracy(
        model, job.x, job.y, spec["eps"], make_attack(spec["attack"]), batch_size=spec["batch_size"], device=job.device, seed=spec["seed"], on_batch=record_nfe
    )
    # The clean forward NFE of the ODE models (the attack's NFE are recorded per batch above).
    predict(model, job.x[: spec["batch_size"]], spec["batch_size"], job.device)
    job.write("attack", {"attack": spec["attack"]["name"], **res, "nfe_mean": forward_nfe(model), "nfe_attack_mean": (sum(nfe) / len(nfe)) if nfe else None})
    print("[attack] " + ", ".join(f"eps={e['eps']:.4g}: {e['robust_acc']:.3f}" for e in res["per_eps"]) + f" (clean {res['clean_acc']:.3f})", file=sys.stderr)


def cmd_verify(a) -> None:
    from .attacks import make_attack
    from .evaluate import certified_errors

    job = _EvalJob(a)
    spec = job.spec
    res = certified_errors(
        job.model, job.x, job.y, spec["eps"], spec["methods"], make_attack(spec["attack"]), batch_size=spec["batch_size"], device=job.device, seed=spec["seed"]
    )
    job.write("verify", {"objective": job.train_spec["train"]["objective"], "labels": job.train_spec.get("labels", {}), **res})
    print(
        f"[verify] std err {res['std_err']:.3f}; "
        + ", ".join(f"eps={e['eps']:.4g}: " + "/".join(f"{k} {v:.3f}" for k, v in e["verified_err"].items()) for e in res["per_eps"]),
        file=sys.stderr,
    )


def cmd_report(a) -> None:
    from . import reporting

    outputs = {p.rsplit(".", 1)[1]: p for p in a.out}
    params = _spec(a.params) if a.params else {}
    getattr(reporting, a.what)(a.inputs, **params, outputs=outputs)


def cmd_validate(a) -> None:
    from .config import ConfigError, load

    try:
        cfg = load(*a.files)
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

    s = sub.add_parser("train", parents=[common], help="train one run (resumes from its checkpoint)")
    s.add_argument("--model-out", required=True)
    s.add_argument("--result-out", required=True)
    s.add_argument("--checkpoint", required=True)
    s.add_argument("--no-progress", action="store_true")
    s.set_defaults(func=cmd_train)

    s = sub.add_parser("attack", parents=[common], help="clean and robust accuracy of a model over an epsilon grid")
    s.add_argument("--model", required=True)
    s.add_argument("--out", required=True)
    s.set_defaults(func=cmd_attack)

    s = sub.add_parser("verify", parents=[common], help="standard, verified (IBP, CROWN-IBP) and attack errors over an epsilon grid")
    s.add_argument("--model", required=True)
    s.add_argument("--out", required=True)
    s.set_defaults(func=cmd_verify)

    s = sub.add_parser("report", help="build a table or figure from result files")
    s.add_argument("what", help="a function of robrepro.reporting, e.g. node_table1")
    s.add_argument("inputs", nargs="+")
    s.add_argument("--params", default=None, help="JSON keyword arguments")
    s.add_argument("--out", nargs="+", required=True, help="output files (extension selects the format)")
    s.set_defaults(func=cmd_report)

    s = sub.add_parser("validate-config", help="merge and validate config files")
    s.add_argument("files", nargs="+")
    s.set_defaults(func=cmd_validate)

    a = p.parse_args(argv)
    a.func(a)


if __name__ == "__main__":
    main()
