"""The main job: extract -> compare (+ targets) -> group -> report, resumable at every stage."""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

from layergw.registry import suggest
from workflows.config import ConfigError, MeasureSpec, StudyConfig

log = logging.getLogger(__name__)


class StudyFailed(RuntimeError):
    """Some work failed; everything that finished is stored and a rerun retries only the rest."""


@dataclass
class RunResult:
    run_uri: str
    report_uri: str
    tiles_total: int = 0
    tiles_skipped: int = 0
    failures: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)


@dataclass
class Plan:
    """The work left to do, and how much of it was already done."""

    items: list = field(default_factory=list)
    total: int = 0
    done: int = 0
    tiles_total: int = 0
    tiles_skipped: int = 0


def check_plan(cfg: StudyConfig) -> None:
    """Fail before any cluster work on an unknown measure, parameter, model family or train job."""
    from layergw import measures, models
    from workflows.train import check_refs

    check_refs(cfg)

    specs: list[tuple[str, MeasureSpec]] = [(f"measures[{i}]", m) for i, m in enumerate(cfg.measures)]
    if cfg.targets.enabled:
        specs.append(("targets.measure", cfg.targets.measure))
    for where, m in specs:
        try:
            measure = measures.get(m.name, **m.params)
        except ValueError as e:
            raise ConfigError(f"{where}: {e}") from None
        if measure.target and where != "targets.measure":
            raise ConfigError(
                f"{where}: {m.name!r} is a probe: it reads its second input as a known one-hot "
                "target, so it cannot compare two layers; use it as targets.measure")
    for i, spec in enumerate(cfg.models):
        try:
            models.MODELS.factory(spec.family)
            valid = [p for p in models.MODELS.parameters(spec.family) if p != "checkpoint"]
            for key in spec.params:
                if key not in valid:
                    raise ValueError(f"model family {spec.family!r} has no parameter {key!r}"
                                     f"{suggest(key, valid)}; valid params: {', '.join(valid) or '(none)'}")
            if not spec.checkpoint.startswith("train:"):
                models.fingerprint(spec.family, spec.checkpoint)
        except ValueError as e:
            raise ConfigError(f"models[{i}] ({spec.id}): {e}") from None


def check_group_count(cfg: StudyConfig, manifests: dict[str, dict]) -> None:
    """A fixed ``grouping.k`` must fit every model: fail after extraction, when the points
    are known, rather than after the comparisons."""
    k = cfg.grouping.k
    if k is None:
        return
    small = {mid: len(m["points"]) for mid, m in manifests.items() if len(m["points"]) < k}
    if small:
        listed = ", ".join(f"{mid} ({n})" for mid, n in small.items())
        raise ConfigError(f"grouping.k={k} is more groups than these models have points: {listed}; "
                          f"use a k of at most {min(small.values())}, or leave k unset to choose it")


def check_layout(run, cfg: StudyConfig) -> None:
    """A run folder keeps one tiling: tiles of another size would overlap finished ones."""
    layout = {"tile_size": cfg.compare.tile_size}
    if run.exists("layout.json"):
        old = run.read_json("layout.json")
        if old.get("tile_size") != layout["tile_size"]:
            raise ConfigError(
                f"run folder {run.url()} was tiled with compare.tile_size={old.get('tile_size')}, "
                f"this config has {layout['tile_size']}; use the same tile size, or another run_id")
    else:
        run.write_json("layout.json", layout)


def _progress_bar(total: int, initial: int, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, unit="pair", desc="comparisons", disable=not enabled,
                mininterval=1.0, dynamic_ncols=True)


def plan_tiles(cfg: StudyConfig, run, manifests: dict[str, dict], cache, run_id: str, version: str) -> Plan:
    """Compare work for every model and measure: one item per tile not yet in the store."""
    from workflows.compare import WorkItem, compare_tile_task, make_tiles, tile_path

    plan = Plan()
    hashes = {m.key: cfg.results_hash(m) for m in cfg.measures}
    for spec in cfg.models:
        man = manifests[spec.id]
        names = [p["layer"] for p in man["points"]]
        for measure in cfg.measures:
            meta = {"study": cfg.study, "run_id": run_id, "model": spec.id, "seed": spec.seed,
                    "checkpoint": spec.checkpoint_label, "measure": measure.name, "params": dict(measure.params),
                    "n": man["n"], "config_hash": hashes[measure.key], "code_version": version, "names": names}
            done = set(run.list_files(f"pairs/{spec.id}/{measure.key}", ".parquet"))
            for tile in make_tiles(len(names), cfg.compare.tile_size):
                path = tile_path(spec.id, measure.key, tile)
                plan.tiles_total += 1
                plan.total += len(tile.pairs)
                if path in done:
                    plan.tiles_skipped += 1
                    plan.done += len(tile.pairs)
                    continue

                def submit(spec=spec, measure=measure, path=path, meta=meta, tile=tile):
                    geoms = [cache.ref(spec.id, measure, k) for k in tile.layers]
                    return compare_tile_task.remote(run, path, meta, list(tile.pairs), tile.layers, *geoms)

                plan.items.append(WorkItem((spec.id, measure.key), len(tile.pairs), submit, f"{spec.id}/{measure.key} {path}"))
    return plan


def plan_cross(cfg: StudyConfig, run, manifests: dict[str, dict], cache, run_id: str, version: str,
               plan: Plan) -> None:
    """Cross-model work: one item per tile of each (a, b) grid not yet in the store."""
    from workflows.compare import WorkItem, compare_tile_task, cross_tile_path, make_cross_tiles

    specs = {s.id: s for s in cfg.models}
    for c in cfg.compare.cross:
        for mid in (c.a, c.b):
            if mid not in specs:
                raise ConfigError(f"compare.cross ({c.a}, {c.b}): model {mid!r} became several models (seeds or a "
                                  f"train:<job>/* series); name one of them: "
                                  f"{', '.join(s for s in specs if s.startswith(mid))}")
        sa, sb = specs[c.a], specs[c.b]
        ma, mb = manifests[c.a], manifests[c.b]
        if ma["n"] != mb["n"]:
            raise ConfigError(f"compare.cross ({c.a}, {c.b}): the models were probed on different inputs "
                              f"(n={ma['n']} vs n={mb['n']}); cross comparisons need the same probe set")
        names_a = [p["layer"] for p in ma["points"]]
        names_b = [p["layer"] for p in mb["points"]]
        for measure in cfg.measures:
            b = {"model": c.b, "seed": sb.seed, "checkpoint": sb.checkpoint_label, "names": names_b}
            meta = {"study": cfg.study, "run_id": run_id, "model": c.a, "seed": sa.seed,
                    "checkpoint": sa.checkpoint_label, "measure": measure.name, "params": dict(measure.params),
                    "n": ma["n"], "config_hash": cfg.results_hash(measure), "code_version": version,
                    "names": names_a, "b": b}
            done = set(run.list_files(f"cross/{c.a}/{c.b}/{measure.key}", ".parquet"))
            for tile in make_cross_tiles(len(names_a), len(names_b), cfg.compare.tile_size):
                path = cross_tile_path(c.a, c.b, measure.key, tile)
                plan.tiles_total += 1
                plan.total += len(tile.pairs)
                if path in done:
                    plan.tiles_skipped += 1
                    plan.done += len(tile.pairs)
                    continue
                rows_a = sorted({i for i, _ in tile.pairs})
                cols_b = sorted({j for _, j in tile.pairs})

                def submit(measure=measure, path=path, meta=meta, tile=tile, rows_a=rows_a, cols_b=cols_b, c=c):
                    geoms = [cache.ref(c.a, measure, i) for i in rows_a] + [cache.ref(c.b, measure, j) for j in cols_b]
                    tile_meta = {**meta, "b": {**meta["b"], "layer_ids": cols_b}}
                    return compare_tile_task.remote(run, path, tile_meta, list(tile.pairs), rows_a, *geoms)

                plan.items.append(WorkItem((c.a, measure.key), len(tile.pairs), submit,
                                           f"{c.a} x {c.b}/{measure.key} {path}",
                                           also_uses=((c.b, measure.key),)))


def plan_targets(cfg: StudyConfig, run, manifests: dict[str, dict], cache, plan: Plan) -> None:
    """Target work: one item per (model, target) whose table is not yet in the store."""
    from layergw.results import TARGETS, table
    from workflows.compare import WorkItem
    from workflows.targets import target_task

    tm = cfg.targets.measure
    for spec in cfg.models:
        man = manifests[spec.id]
        for target in man["targets"]:
            out = target_path(spec.id, tm, target)
            plan.total += len(man["points"])
            if run.exists(out):
                plan.done += len(man["points"])
                continue

            def submit(spec=spec, target=target, man=man):
                geoms = [cache.ref(spec.id, tm, p["layer_index"]) for p in man["points"]]
                return target_task.remote(run, spec.id, target, tm.name, dict(tm.params), man["points"], *geoms)

            def on_done(rows, out=out):
                run.write_table(out, table(rows, TARGETS))

            plan.items.append(WorkItem((spec.id, tm.key), len(man["points"]), submit,
                                       f"target {target} of {spec.id}", on_done, first=True))


def target_path(model: str, measure: MeasureSpec, target: str) -> str:
    return f"targets/{model}/{measure.key}/{target}.parquet"


def write_groups(cfg: StudyConfig, run, manifests: dict[str, dict]) -> list[str]:
    """Group every model under every measure into groups.parquet; return what was skipped and why."""
    from layergw.results import GROUPS, table
    from workflows.group import group_rows

    rows, skipped = [], []
    for spec in cfg.models:
        points = manifests[spec.id]["points"]
        display = {p["layer_index"]: p["display"] for p in points}
        names = [p["layer"] for p in points]
        for measure in cfg.measures:
            try:
                rows += group_rows(run, spec.id, measure, names, display, cfg.grouping)
            except ValueError as e:
                skipped.append(f"groups of {spec.id}/{measure.key}: {e}")
                log.warning("%s", skipped[-1])
    run.write_table("groups.parquet", table(rows, GROUPS))
    return skipped


def write_targets(cfg: StudyConfig, run, manifests: dict[str, dict]) -> None:
    """Gather this config's per-target tables into targets.parquet."""
    import pyarrow as pa

    from layergw.results import TARGETS

    if not cfg.targets.enabled:
        return
    parts = [run.read_table(target_path(spec.id, cfg.targets.measure, t))
             for spec in cfg.models for t in manifests[spec.id]["targets"]]
    if parts:
        run.write_table("targets.parquet", pa.concat_tables([p.select(TARGETS.names).cast(TARGETS) for p in parts]))


def run_study(cfg: StudyConfig, *, store_uri: str | None = None, address: str | None = None,
              show_progress: bool = True) -> RunResult:
    """Run (or resume) a study; return where its results and report are."""
    from layergw.report import build_report
    from layergw.results import POINTS, table
    from layergw.store import ResultStore
    from workflows.compare import GeometryCache, run_items
    from workflows.extract import run_extract
    from workflows.train import expand_models, run_train
    from workflows.runtime import cluster_cpus, cluster_gpus, code_version, init_ray

    check_plan(cfg)
    timings: dict[str, float] = {}
    t_start = time.perf_counter()
    root = ResultStore(store_uri or cfg.store)
    root.check()
    run_id = cfg.resolved_run_id
    run = root.child(cfg.study, run_id)
    check_layout(run, cfg)
    version = code_version()
    run.write_json("config.json", {"config": cfg.model_dump(mode="json"), "results_hash": cfg.results_hash(),
                                   "code_version": version, "run_id": run_id})
    log.info("run %s -> %s", run_id, run.url())

    t = time.perf_counter()
    init_ray(address or cfg.ray.address, cfg.ray.num_cpus)
    timings["ray_start"] = time.perf_counter() - t

    gpus = cfg.ray.extract_num_gpus if cfg.ray.extract_num_gpus is not None else (1.0 if cluster_gpus() > 0 else 0.0)
    if cfg.train:
        t = time.perf_counter()
        run_train(cfg, run, num_gpus=gpus)
        timings["train"] = time.perf_counter() - t
    expanded, series = expand_models(cfg, run)
    cfg = cfg.model_copy(update={"models": expanded, "run_id": run_id})
    run.write_json("series.json", series)

    t = time.perf_counter()
    manifests = run_extract(cfg.models, cfg.probe, run, num_gpus=gpus)
    run.write_table("points.parquet", table([r for m in manifests.values() for r in m["points"]], POINTS))
    timings["extract"] = time.perf_counter() - t
    check_group_count(cfg, manifests)

    t = time.perf_counter()
    cache = GeometryCache(run)
    plan = plan_tiles(cfg, run, manifests, cache, run_id, version)
    plan_cross(cfg, run, manifests, cache, run_id, version, plan)
    if cfg.targets.enabled:
        plan_targets(cfg, run, manifests, cache, plan)
    if plan.tiles_skipped:
        log.info("%d of %d tiles already finished in %s, skipping them", plan.tiles_skipped, plan.tiles_total,
                 run.url("pairs"))
    max_in_flight = cfg.compare.max_in_flight or 2 * cluster_cpus()
    with _progress_bar(plan.total, plan.done, show_progress) as bar:
        failures = run_items(plan.items, cache, max_in_flight, bar.update)
    timings["compare"] = time.perf_counter() - t
    log.info("prepared %d layer geometries, ran %d tasks", cache.prepared, len(plan.items))

    t = time.perf_counter()
    if not failures:
        write_targets(cfg, run, manifests)
    groups_skipped = write_groups(cfg, run, manifests)
    timings["group"] = time.perf_counter() - t
    if cfg.skip and not failures:
        from workflows.skip import run_skip

        t = time.perf_counter()
        run_skip(cfg, run, manifests)
        timings["skip"] = time.perf_counter() - t
    timings["total_before_report"] = time.perf_counter() - t_start
    status = {"run_id": run_id, "study": cfg.study, "code_version": version, "timings": timings,
              "tiles_total": plan.tiles_total, "tiles_skipped": plan.tiles_skipped, "pairs_total": plan.total,
              "failures": failures, "groups_skipped": groups_skipped,
              "ray": {"cpus": cluster_cpus(), "gpus": cluster_gpus()},
              "status": "failed" if failures else "complete"}
    run.write_json("run.json", status)
    t = time.perf_counter()
    report_uri = build_report(run)
    timings["report"] = time.perf_counter() - t
    run.write_json("run.json", status)
    result = RunResult(run.uri, report_uri, plan.tiles_total, plan.tiles_skipped, failures, timings)
    if failures:
        raise StudyFailed(f"{len(failures)} task(s) failed; finished work is stored under {run.url()} and a rerun "
                          f"retries only what is missing:\n  " + "\n  ".join(failures[:10]))
    return result
