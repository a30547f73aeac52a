"""The ``layergw`` command line."""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from layergw import layout

log = logging.getLogger("layergw")


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")


def cmd_run(args: argparse.Namespace) -> int:
    from workflows.config import load_config
    from workflows.study import run_study

    cfg = load_config(args.config, args.overrides)
    result = run_study(cfg, store_uri=args.store, address=args.address, show_progress=not args.no_progress)
    reused = f" ({result.tiles_reused} of {result.tiles_total} tiles were already done)" if result.tiles_reused else ""
    print(f"run finished{reused}: {result.run_uri}")
    _print_groups(result.run_uri)
    print(f"report: {result.report_uri}")
    return 0


def _print_groups(run_uri: str) -> None:
    from layergw.report import groups_summary
    from layergw.store import ResultStore

    run = ResultStore(run_uri)
    if run.exists(layout.GROUPS):
        for line in groups_summary(run.read_table(layout.GROUPS)):
            print(f"groups: {line}")


def cmd_report(args: argparse.Namespace) -> int:
    from layergw.report import build_report
    from layergw.store import ResultStore

    run = ResultStore(args.run_uri)
    if not run.exists(layout.POINTS):
        raise ValueError(f"{run.url()} is not a layergw run folder (no points.parquet); "
                         f"give the folder that `layergw run` printed")
    print(f"report: {build_report(run)}")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from layergw.families.modsum.checkpoint import save_checkpoint
    from layergw.families.modsum.training import PRESETS, ModSumTrainSpec, export_state, train_modsum
    from layergw.torchkit.checkpoint import STATE_FILE
    from layergw.torchkit.device import resolve_device

    if args.preset:
        if args.preset not in PRESETS:
            raise ValueError(f"unknown preset {args.preset!r}; valid presets: {', '.join(PRESETS)}")
        spec = PRESETS[args.preset]
    else:
        spec = ModSumTrainSpec(model_id=args.id, task=args.task, n_blocks=args.blocks, scheme=args.scheme)
    changes = {k: v for k, v in {"max_epochs": args.max_epochs, "extra_epochs": args.extra_epochs,
                                 "seed": args.seed, "eval_every": args.eval_every}.items() if v is not None}
    changes.update(_spec_settings(args.set, ModSumTrainSpec))
    if args.id and args.preset:
        changes["model_id"] = args.id
    spec = type(spec)(**{**spec.__dict__, **changes})
    device = resolve_device(args.device)
    workdir = Path(args.out) / spec.model_id
    older = Path(args.out) / f"{spec.model_id}.state.pt"  # where states were kept before one train state
    if older.is_file() and not (workdir / STATE_FILE).exists():
        workdir.mkdir(parents=True, exist_ok=True)
        older.replace(workdir / STATE_FILE)
        print(f"moved the training state {older} to {workdir / STATE_FILE}")
    if args.export:
        model, record = export_state(spec, workdir)
    else:
        on_eval = None
        if args.snapshot_every:
            from layergw.families.modsum.training import snapshot_saver

            on_eval = snapshot_saver(spec, Path(args.out) / f"{spec.model_id}.snapshots", args.snapshot_every)
        model, record = train_modsum(spec, device=device, workdir=workdir, save_every=args.save_every,
                                     phases=args.phases, on_eval=on_eval)
    path = save_checkpoint(model, record, args.out)
    done = "trained" if record["complete"] else "exported unfinished training of"
    print(f"{done} {spec.model_id}: train acc {record['final_train_acc']:.4f}, "
          f"val acc {record['final_val_acc']:.4f}, {record['seconds']:.0f}s -> {path}")
    return 0


def _spec_settings(items: list[str], cls: type) -> dict:
    """``KEY=VALUE`` settings of a spec dataclass (YAML values); an unknown key names the valid ones."""
    import dataclasses

    import yaml

    from layergw.registry import suggest

    valid = [f.name for f in dataclasses.fields(cls)]
    numeric = {f.name: f.default for f in dataclasses.fields(cls)}
    out = {}
    for item in items or ():
        key, eq, raw = item.partition("=")
        if not eq or key not in valid:
            raise ValueError(f"--set {item!r}: expected KEY=VALUE with KEY one of {', '.join(valid)}"
                             f"{suggest(key, valid) if eq else ''}")
        value = yaml.safe_load(raw)
        if isinstance(value, str) and isinstance(numeric.get(key), float):
            try:  # YAML 1.1 reads 3e-4 (no dot) as a string
                value = float(value)
            except ValueError:
                raise ValueError(f"--set {item!r}: {key} must be a number, got {raw!r}") from None
        out[key] = tuple(value) if isinstance(value, list) else value
    return out


def cmd_handover(args: argparse.Namespace) -> int:
    from layergw.families.modsum.handover import handover_table

    table = handover_table([Path(p) for p in args.paths], blocks=args.blocks)
    if args.out:
        table.to_parquet(args.out)
    if args.markdown:
        cells = [[f"{v:.3f}" if isinstance(v, float) else str(v) for v in row] for row in table.itertuples(index=False)]
        print("| " + " | ".join(table.columns) + " |\n|" + "---|" * len(table.columns))
        print("\n".join("| " + " | ".join(c) + " |" for c in cells))
    else:
        print(table.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    return 0


def cmd_curves(args: argparse.Namespace) -> int:
    from layergw.families.modsum.curves import phase_series
    from layergw.plot import series_png

    series = phase_series(args.paths, phase=args.phase, what=args.what)
    kind = {"val": "validation accuracy", "train": "training accuracy"}.get(args.what,
                                                                          f"validation accuracy of {args.what}")
    series_png(series, args.out, title=f"phase {args.phase}: {kind}", xlabel="epoch", ylabel=kind)
    print(f"wrote {args.out}")
    return 0


def cmd_submit(args: argparse.Namespace) -> int:
    from workflows.config import load_config
    from workflows.submit import submit

    cfg = load_config(args.config, args.overrides)
    done = submit(cfg, Path(args.config), args.address, store=args.store, overrides=list(args.overrides),
                  attach=args.attach, code=args.code)
    verb = "attached to" if done.attached else "submitted"
    print(f"{verb} job {done.submission_id} at {args.address}")
    if not args.wait:
        print(f"follow it with: layergw logs {args.config} --address {args.address} --follow")
        return 0
    return _finish(args.address, done.submission_id)


def _finish(address: str, submission_id: str) -> int:
    from ray.job_submission import JobSubmissionClient

    from workflows.submit import wait

    client = JobSubmissionClient(address)
    status = wait(client, submission_id)
    info = client.get_job_info(submission_id)
    print(f"job {submission_id}: {status}" + (f" ({info.message})" if info.message and status != "SUCCEEDED" else ""))
    return 0 if status == "SUCCEEDED" else 1


def _job(args: argparse.Namespace):
    from ray.job_submission import JobSubmissionClient

    from workflows.config import load_config
    from workflows.submit import latest

    client = JobSubmissionClient(args.address)
    if Path(args.study).suffix in (".yaml", ".yml"):
        return client, latest(client, load_config(args.study, args.overrides)).submission_id
    return client, args.study


def cmd_status(args: argparse.Namespace) -> int:
    client, submission_id = _job(args)
    info = client.get_job_info(submission_id)
    status = str(info.status).split(".")[-1]
    print(f"{submission_id}: {status}" + (f" ({info.message})" if info.message else ""))
    if status == "FAILED":
        tail = client.get_job_logs(submission_id).strip().splitlines()[-15:]
        print("\n".join(tail))
    return 0


def cmd_logs(args: argparse.Namespace) -> int:
    client, submission_id = _job(args)
    if args.follow:
        return _finish(args.address, submission_id)
    print(client.get_job_logs(submission_id), end="")
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from workflows.bench import run_bench

    if args.suite == "history":
        return _bench_history(args)
    if args.uri:
        raise ValueError(f"layergw bench {args.suite}: unexpected argument {args.uri!r} (the store goes in --store)")
    sizes = tuple(args.sizes) if args.sizes else None
    path = run_bench(args.suite, args.out, sizes=sizes, markdown=args.markdown, store=args.store,
                     repeats=args.repeats)
    print(f"benchmark results: {path}" + (f"; table: {args.markdown}" if args.markdown else "")
          + (f"; history: {args.store}" if args.store else ""))
    return 0


def _bench_history(args: argparse.Namespace) -> int:
    from workflows.bench_history import read, report, trends

    if not args.uri:
        raise ValueError("layergw bench history needs the store URI: layergw bench history s3://bucket/prefix")
    history = read(args.uri)
    found = trends(history, threshold=args.threshold, window=args.window)
    for t in found:
        print(t.describe())
    print(f"history: {report(args.uri, history, found, args.threshold)}")
    bad = [t.figure for t in found if t.regressed]
    if bad:
        print(f"error: {len(bad)} figure(s) regressed, more than {args.threshold:.0%} beyond their history's range on "
              f"the worse side: {', '.join(bad)}",
              file=sys.stderr)
        return 1
    return 0


def cmd_docs(args: argparse.Namespace) -> int:
    from workflows.docs import write

    stale = write(args.out, check=args.check)
    for path in stale:
        print(f"{'differs from the code' if args.check else 'written'}: {path}")
    return 1 if stale and args.check else 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="layergw", description="Layer groups from representation similarity (GW) on Ray")
    p.add_argument("-v", "--verbose", action="store_true")
    sub = p.add_subparsers(dest="command", required=True)

    r = sub.add_parser("run", help="run a study: extract, compare, group, report")
    r.add_argument("config")
    r.add_argument("--store", help="result store root URI (default: the config's store, ./runs)")
    r.add_argument("--address", help="Ray address (default: start a local Ray)")
    r.add_argument("--no-progress", action="store_true", help="no progress bar")
    r.add_argument("overrides", nargs="*", help="key=value config overrides, e.g. inputs.n=128")
    r.set_defaults(fn=cmd_run)

    rep = sub.add_parser("report", help="rebuild the HTML report of a stored run")
    rep.add_argument("run_uri")
    rep.set_defaults(fn=cmd_report)

    t = sub.add_parser("train", help="train a modular-sum model (Model 0, E or L of the paper)")
    t.add_argument("--preset", help="model_0, model_E or model_L (the paper's settings)")
    t.add_argument("--id", help="model id of the checkpoint (default: the preset's)")
    t.add_argument("--task", default="f_mod", help="f_mod or f_mod3")
    t.add_argument("--blocks", type=int, default=1)
    t.add_argument("--scheme", default="end_to_end", help="end_to_end or layerwise")
    t.add_argument("--max-epochs", type=int)
    t.add_argument("--extra-epochs", type=int, help="epochs to go on after the accuracy goal is met")
    t.add_argument("--eval-every", type=int)
    t.add_argument("--seed", type=int)
    t.add_argument("--device", help="cpu or cuda (default: cuda when available)")
    t.add_argument("--out", default="checkpoints",
                   help="folder for <id>.safetensors and <id>.json; <id>/train-state.pt there holds the training "
                        "state, and a rerun resumes from it")
    t.add_argument("--save-every", type=int, default=500, help="epochs between saved training states")
    t.add_argument("--export", action="store_true",
                   help="write the checkpoint from the saved training state as it stands, without training")
    t.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="any training-spec field, e.g. --set weight_decay=0.5 (repeatable)")
    t.add_argument("--phases", type=int, help="train only the first this many phases (e.g. 1: block 1 of model_L)")
    t.add_argument("--snapshot-every", type=int,
                   help="also keep a checkpoint every this many epochs and at each phase's first goal epoch, "
                        "in <out>/<id>.snapshots/")
    t.set_defaults(fn=cmd_train)

    h = sub.add_parser("handover", help="how linearly a modular-sum block's output codes what the next block needs")
    h.add_argument("paths", nargs="+", help="checkpoints (.safetensors with .json) or folders of them (snapshots)")
    h.add_argument("--blocks", type=int, nargs="+", help="blocks, counted from 0 (default: every block)")
    h.add_argument("--out", help="also write the table as Parquet")
    h.add_argument("--markdown", action="store_true", help="print a Markdown table")
    h.set_defaults(fn=cmd_handover)

    c = sub.add_parser("curves", help="accuracy over the epochs of one phase of modular-sum checkpoints, as a PNG")
    c.add_argument("paths", nargs="+", help="checkpoints (.json or .safetensors with its .json)")
    c.add_argument("--phase", type=int, default=1, help="the phase, counted from 1 (default 1)")
    c.add_argument("--what", default="val", help="val, train, or a head's target (c2, b, ...): its validation "
                   "accuracy (default val)")
    c.add_argument("--out", required=True, help="the PNG to write")
    c.set_defaults(fn=cmd_curves)

    s = sub.add_parser("submit", help="submit `layergw run` as a Ray job (docs/cluster.md)")
    s.add_argument("config")
    s.add_argument("--address", required=True, help="Ray dashboard address, e.g. http://HEAD:8265")
    s.add_argument("--store", help="result store the job writes to: s3:// or gs:// for a remote cluster")
    s.add_argument("--wait", action="store_true", help="follow the job's logs and exit with its status")
    s.add_argument("--attach", action="store_true", help="follow the study's running job instead of refusing")
    s.add_argument("--code", default="source", help="source: ship this checkout's packages (default); "
                                                    "installed: run the cluster's installed layergw")
    s.add_argument("overrides", nargs="*")
    s.set_defaults(fn=cmd_submit)

    for name, fn, what in (("status", cmd_status, "a submitted study's job status"),
                           ("logs", cmd_logs, "a submitted study's job logs")):
        j = sub.add_parser(name, help=what)
        j.add_argument("study", help="the study's config (its latest job) or a submission id")
        j.add_argument("--address", required=True, help="Ray dashboard address, e.g. http://HEAD:8265")
        if name == "logs":
            j.add_argument("--follow", action="store_true", help="follow until the job ends; exit with its status")
        j.add_argument("overrides", nargs="*")
        j.set_defaults(fn=fn)

    d = sub.add_parser("docs", help="write docs/config.md and docs/cli.md from the code (or --check them)")
    d.add_argument("--out", default="docs", help="folder of the pages (default: docs)")
    d.add_argument("--check", action="store_true", help="write nothing; exit 1 if a page differs from the code")
    d.set_defaults(fn=cmd_docs)

    b = sub.add_parser("bench", help="run a benchmark suite (results as Parquet), or `bench history URI`")
    b.add_argument("suite", nargs="?", default="gw",
                   help="gw, gw-model (Model L layer pairs), gw-batch (gw_batch's throughput), measures, compare, "
                        "extract, extract-memory, demo, memory, trainer (modsum seconds per epoch), isometry (what GW "
                        "to a one-hot target can see), all; or history")
    b.add_argument("uri", nargs="?", help="with history: the store holding the history")
    b.add_argument("--out", default="bench-results")
    b.add_argument("--store", help="also append the figures to this store's benchmark history")
    b.add_argument("--repeats", type=int, default=3,
                   help="history suites: runs of the suite whose median and range each figure records")
    b.add_argument("--threshold", type=float, default=0.25,
                   help="history: how far beyond the previous runs' range (relative, worse side) is a regression")
    b.add_argument("--window", type=int, default=5, help="history: previous runs whose range a figure is held to")
    b.add_argument("--sizes", type=int, nargs="+", help="input counts n (default: gw 256 512 1000 2000, measures 256 1000)")
    b.add_argument("--markdown", help="also write the results as a Markdown table to this file")
    b.set_defaults(fn=cmd_bench)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:
        if args.command in ("run", "submit", "status", "logs") and all("=" in x and not x.startswith("-") for x in extra):
            args.overrides = list(args.overrides) + extra
        else:
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
    _setup_logging(args.verbose)
    if args.command == "train" and not args.preset and not args.id:
        print("error: layergw train needs --preset or --id", file=sys.stderr)
        return 2
    try:
        return args.fn(args)
    except KeyboardInterrupt:
        print("interrupted; finished work is stored and a rerun resumes", file=sys.stderr)
        return 130
    except Exception as e:  # noqa: BLE001 - the CLI turns every failure into one clear line
        from workflows.study import StudyFailed

        cause = getattr(e, "cause", None) or e
        if args.verbose or not isinstance(cause, (ValueError, OSError, RuntimeError, StudyFailed)):
            raise
        print(f"error: {cause}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
