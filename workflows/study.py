"""The main job: extract -> compare (+ targets) -> group -> report, resumable at every stage."""
from __future__ import annotations

import functools
import logging
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable

from layergw import layout
from layergw.registry import suggest
from workflows.config import ConfigError, MeasureSpec, StudyConfig
from workflows.extract import Manifest

log = logging.getLogger(__name__)


class StudyFailed(RuntimeError):
    """Some work failed; everything that finished is stored and a rerun retries only the rest."""


@dataclass
class RunResult:
    run_uri: str
    report_uri: str
    tiles_total: int = 0
    tiles_reused: int = 0
    failures: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)


@dataclass
class Plan:
    """The work left to do, and how much of it was already done."""

    items: list = field(default_factory=list)
    total: int = 0
    done: int = 0
    tiles_total: int = 0
    tiles_reused: int = 0


def check_plan(cfg: StudyConfig) -> None:
    """Fail before any cluster work on an unknown measure, parameter, model family or train job."""
    from layergw import families, measures
    from workflows.train import check_jobs

    check_jobs(cfg)

    specs: list[tuple[str, MeasureSpec]] = [(f"measures[{i}]", m) for i, m in enumerate(cfg.measures)]
    if cfg.targets.enabled:
        specs += [(f"targets.measures[{i}]", m) for i, m in enumerate(cfg.targets.measures)]
    for where, m in specs:
        try:
            measure = measures.get(m.name, **m.params)
        except ValueError as e:
            raise ConfigError(f"{where}: {e}") from None
        if measure.target and not where.startswith("targets."):
            raise ConfigError(
                f"{where}: {m.name!r} is a probe: it reads its second input as a known one-hot "
                "target, so it cannot compare two layers; use it under targets.measures")
    for i, spec in enumerate(cfg.models):
        try:
            family = families.get(spec.family)
            valid = family.load_parameters()
            for key in spec.params:
                if key not in valid:
                    raise ValueError(f"model family {spec.family!r} has no parameter {key!r}"
                                     f"{suggest(key, valid)}; valid params: {', '.join(valid) or '(none)'}")
            if not spec.checkpoint.startswith("train:"):
                family.fingerprint(spec.checkpoint)
        except ValueError as e:
            raise ConfigError(f"models[{i}] ({spec.id}): {e}") from None
    specs_by_id = {m.id: m for m in cfg.models}
    for k, entry in enumerate(cfg.ablate):
        family = families.get(specs_by_id[entry.model].family)
        if not family.can_ablate:
            raise ConfigError(f"ablate[{k}] ({entry.model}): model family {family.name!r} cannot prune or freeze "
                              f"its models")


def check_group_count(cfg: StudyConfig, manifests: dict[str, Manifest]) -> None:
    """A fixed ``grouping.k`` must fit every model: fail after extraction, when the points
    are known, rather than after the comparisons."""
    k = cfg.grouping.k
    if k is None:
        return
    grouped = {mid: sum(not p.constant for p in m.points) for mid, m in manifests.items()}
    small = {mid: n for mid, n in grouped.items() if n < k}
    if small:
        listed = ", ".join(f"{mid} ({n})" for mid, n in small.items())
        raise ConfigError(f"grouping.k={k} is more groups than these models have points to group (constant points "
                          f"are left out): {listed}; use a k of at most {min(small.values())}, or leave k unset to "
                          f"choose it")


def check_layout(run, cfg: StudyConfig) -> None:
    """A run folder keeps one tiling: a fixed tile size that differs from its tiles' is refused
    before any work (``workflows.tiling``)."""
    from workflows.tiling import recorded_sizes

    recorded_sizes(cfg, run)


def _progress_bar(total: int, initial: int, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, unit="pair", desc="comparisons", disable=not enabled,
                mininterval=1.0, dynamic_ncols=True)


def _side(model: str, seed: int, checkpoint: str, man: Manifest):
    from workflows.compare import Side

    return Side(model, seed, checkpoint, tuple(man.names))


def _context(run, measure, n: int, cfg: StudyConfig, run_id: str, version: str, a, b) -> Callable[[], Any]:
    """The tile context of one grid, put in Ray's object store at the first submit (a grid whose
    tiles are all finished puts nothing): a function that returns its reference."""
    import ray

    from workflows.compare import TileContext

    @functools.cache
    def get():
        return ray.put(TileContext(run, measure.name, dict(measure.params), n, cfg.study, run_id,
                                   cfg.results_hash(measure), version, a, b))

    return get


def _reused(plan: Plan, tile, path: str, done: set[str]) -> bool:
    """Count ``tile`` into the plan; True when its file is already in the store (nothing to run)."""
    count = tile.count
    plan.tiles_total += 1
    plan.total += count
    if path in done:
        plan.tiles_reused += 1
        plan.done += count
        return True
    return False


def plan_tiles(cfg: StudyConfig, run, manifests: dict[str, Manifest], cache, run_id: str, version: str,
               sizes: dict[str, int]) -> Plan:
    """Compare work for every model and measure: one item per tile not yet in the store."""
    from workflows.compare import WorkItem, compare_tile_task, make_tiles, tile_gpus
    from workflows.runtime import cluster_gpus

    plan = Plan()
    gpus_of = tile_gpus(cfg.measures, cfg.compare.batch_num_gpus, cluster_gpus())
    for spec in cfg.models:
        man = manifests[spec.id]
        side = _side(spec.id, spec.seed, spec.checkpoint_label, man)
        for measure in cfg.measures:
            key = measure.key
            task = compare_tile_task.options(num_gpus=gpus_of[key], enable_task_events=cfg.compare.task_events)
            context = _context(run, measure, man.n, cfg, run_id, version, side, side)
            done = set(run.list_files(layout.pairs_dir(spec.id, key), ".parquet"))
            for tile in make_tiles(len(man.points), sizes[key]):
                path = layout.tile(spec.id, key, tile.i0, tile.j0)
                if _reused(plan, tile, path, done):
                    continue

                def submit(model=spec.id, measure=measure, key=key, task=task, context=context, path=path,
                           tile=tile):
                    refs, where = cache.refs_for(model, measure, tile.layers, key=key)
                    return task.remote(context(), path, tile, where, *refs)

                plan.items.append(WorkItem((spec.id, key), tile.count, submit, f"{spec.id}/{key} {path}"))
    return plan


def plan_cross(cfg: StudyConfig, run, manifests: dict[str, Manifest], cache, run_id: str, version: str,
               plan: Plan, sizes: dict[str, int]) -> None:
    """Cross-model work: one item per tile of each (a, b) grid not yet in the store."""
    from workflows.compare import WorkItem, compare_tile_task, make_cross_tiles, tile_gpus
    from workflows.runtime import cluster_gpus

    specs = {s.id: s for s in cfg.models}
    gpus_of = tile_gpus(cfg.measures, cfg.compare.batch_num_gpus, cluster_gpus())
    for c in cfg.compare.cross:
        for mid in (c.a, c.b):
            if mid not in specs:
                raise ConfigError(f"compare.cross ({c.a}, {c.b}): model {mid!r} became several models (seeds or a "
                                  f"train:<job>/* series); name one of them: "
                                  f"{', '.join(s for s in specs if s.startswith(mid))}")
        sa, sb = specs[c.a], specs[c.b]
        ma, mb = manifests[c.a], manifests[c.b]
        if ma.n != mb.n:
            raise ConfigError(f"compare.cross ({c.a}, {c.b}): the models ran different inputs "
                              f"(n={ma.n} vs n={mb.n}); cross comparisons need the same input set")
        side_a, side_b = _side(c.a, sa.seed, sa.checkpoint_label, ma), _side(c.b, sb.seed, sb.checkpoint_label, mb)
        for measure in cfg.measures:
            key = measure.key
            task = compare_tile_task.options(num_gpus=gpus_of[key], enable_task_events=cfg.compare.task_events)
            context = _context(run, measure, ma.n, cfg, run_id, version, side_a, side_b)
            done = set(run.list_files(layout.cross_dir(c.a, c.b, key), ".parquet"))
            for tile in make_cross_tiles(len(ma.points), len(mb.points), sizes[key]):
                path = layout.cross_tile(c.a, c.b, key, tile.i0, tile.j0)
                if _reused(plan, tile, path, done):
                    continue

                def submit(measure=measure, key=key, task=task, context=context, path=path, tile=tile, c=c):
                    refs_a, where_a = cache.refs_for(c.a, measure, tile.rows, key=key)
                    refs_b, where_b = cache.refs_for(c.b, measure, tile.cols, offset=len(refs_a), key=key)
                    return task.remote(context(), path, tile, where_a + where_b, *refs_a, *refs_b)

                plan.items.append(WorkItem((c.a, key), tile.count, submit, f"{c.a} x {c.b}/{key} {path}",
                                           also_uses=((c.b, key),)))


def plan_targets(cfg: StudyConfig, run, manifests: dict[str, Manifest], cache, plan: Plan) -> None:
    """Target work: one item per (model, target) whose table is not yet in the store."""
    from layergw.results import TARGETS, table
    from workflows.compare import WorkItem
    from workflows.targets import target_task

    for tm in cfg.targets.measures:
        for spec in cfg.models:
            man = manifests[spec.id]
            for target in man.targets:
                out = layout.target_table(spec.id, tm.key, target)
                plan.total += len(man.points)
                if run.exists(out):
                    plan.done += len(man.points)
                    continue

                def submit(spec=spec, target=target, man=man, tm=tm):
                    refs, where = cache.refs_for(spec.id, tm, [p.layer_index for p in man.points])
                    return target_task.remote(run, spec.id, target, tm.name, dict(tm.params), man.points, where,
                                              *refs)

                def on_done(rows, out=out):
                    run.write_table(out, table(rows, TARGETS))

                plan.items.append(WorkItem((spec.id, tm.key), len(man.points), submit,
                                           f"target {target} of {spec.id} ({tm.key})", on_done, first=True))


def write_groups(cfg: StudyConfig, run, manifests: dict[str, Manifest]) -> list[str]:
    """Group every model under every measure into groups.parquet; return what was left out and why."""
    from layergw.results import GROUPS, table
    from workflows.group import group_rows

    rows, left_out = [], []
    for spec in cfg.models:
        man = manifests[spec.id]
        constant = frozenset(p.layer_index for p in man.points if p.constant)
        if constant:
            log.info("groups of %s leave out %s: constant over the inputs, so no measure can place them", spec.id,
                     ", ".join(man.names[i] for i in sorted(constant)))
        for measure in cfg.measures:
            try:
                rows += group_rows(run, spec.id, measure, man.names, man.displays, cfg.grouping, constant)
            except ValueError as e:
                left_out.append(f"groups of {spec.id}/{measure.key}: {e}")
                log.warning("%s", left_out[-1])
    run.write_table(layout.GROUPS, table(rows, GROUPS))
    return left_out


def write_targets(cfg: StudyConfig, run, manifests: dict[str, Manifest]) -> None:
    """Gather this config's per-target tables into targets.parquet."""
    import pyarrow as pa

    from layergw.results import TARGETS

    if not cfg.targets.enabled:
        return
    parts = [run.read_table(layout.target_table(spec.id, tm.key, t)) for tm in cfg.targets.measures
             for spec in cfg.models for t in manifests[spec.id].targets]
    if parts:
        run.write_table(layout.TARGETS, pa.concat_tables([p.select(TARGETS.names).cast(TARGETS) for p in parts]))


def _share(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.0f}%"


def run_study(cfg: StudyConfig, *, store_uri: str | None = None, address: str | None = None,
              show_progress: bool = True) -> RunResult:
    """Run (or resume) a study; return where its results and report are."""
    from layergw.report import build_report
    from layergw.results import POINTS, table
    from layergw.store import ResultStore
    from workflows.compare import GeometryCache, Usage, run_items
    from workflows.diagnose import run_diagnose
    from workflows.group import write_agreement, write_dynamics
    from workflows.extract import run_extract
    from workflows.runtime import cluster_cpus, cluster_gpus, code_version, init_ray
    from workflows.progress import Progress, mark_stage
    from workflows.tiling import resolve_tiling
    from workflows.train import expand_models, run_train

    check_plan(cfg)
    timings: dict[str, float] = {}
    t_start = time.perf_counter()
    root = ResultStore(store_uri or cfg.store)
    root.check()
    run_id = cfg.resolved_run_id
    run = root.child(cfg.study, run_id)
    check_layout(run, cfg)
    version = code_version()
    run.write_json(layout.CONFIG, {"config": cfg.model_dump(mode="json"), "results_hash": cfg.results_hash(),
                                   "code_version": version, "run_id": run_id})
    log.info("run %s -> %s", run_id, run.url())

    t = time.perf_counter()
    init_ray(address or cfg.ray.address, cfg.ray.num_cpus)
    timings["ray_start"] = time.perf_counter() - t

    gpus = cfg.ray.extract_num_gpus if cfg.ray.extract_num_gpus is not None else (1.0 if cluster_gpus() > 0 else 0.0)
    mark_stage(run, "train", timings, run_id=run_id, study=cfg.study)
    if cfg.train:
        t = time.perf_counter()
        run_train(cfg, run, num_gpus=gpus)
        timings["train"] = time.perf_counter() - t
    expanded, series = expand_models(cfg, run)
    cfg = cfg.model_copy(update={"models": expanded, "run_id": run_id})
    run.write_json(layout.SERIES, series)

    mark_stage(run, "extract", timings, run_id=run_id, study=cfg.study)
    t = time.perf_counter()
    manifests = run_extract(cfg.models, cfg.inputs, run, num_gpus=gpus, shards=cfg.ray.extract_shards)
    run.write_table(layout.POINTS, table([asdict(r) for m in manifests.values() for r in m.points], POINTS))
    timings["extract"] = time.perf_counter() - t
    check_group_count(cfg, manifests)

    t = time.perf_counter()
    sizes = resolve_tiling(cfg, run, manifests, cluster_cpus())
    timings["tiling"] = time.perf_counter() - t
    t_plan = time.perf_counter()
    cache = GeometryCache(run, chunks=sizes, layers={m: len(man.points) for m, man in manifests.items()})
    plan = plan_tiles(cfg, run, manifests, cache, run_id, version, sizes)
    plan_cross(cfg, run, manifests, cache, run_id, version, plan, sizes)
    if cfg.targets.enabled:
        plan_targets(cfg, run, manifests, cache, plan)
    timings["plan"] = time.perf_counter() - t_plan
    if plan.tiles_reused:
        log.info("%d of %d tiles already finished in %s, reusing them", plan.tiles_reused, plan.tiles_total,
                 run.url(layout.PAIRS_DIR))
    max_in_flight = cfg.compare.max_in_flight or 2 * cluster_cpus()
    mark_stage(run, "compare", timings, run_id=run_id, study=cfg.study)
    usage, t_compare = Usage(), time.perf_counter()
    with _progress_bar(plan.total, plan.done, show_progress) as bar:
        progress = Progress("compare", plan.total, plan.done, "pairs", bar=bar)
        failures = run_items(plan.items, cache, max_in_flight, progress.update, usage)
    timings["compare"] = time.perf_counter() - t
    compare_usage = {**usage.summary(time.perf_counter() - t_compare, cluster_cpus()), "peak_refs": cache.peak_refs,
                     "prepare_tasks": cache.tasks, "tile_sizes": sizes}
    log.info("prepared %d layer geometries in %d tasks, ran %d tasks; cores busy %s, task overhead %s",
             cache.prepared, cache.tasks, len(plan.items), _share(compare_usage["busy_share"]), _share(compare_usage["overhead_share"]))

    mark_stage(run, "group", timings, run_id=run_id, study=cfg.study)
    t = time.perf_counter()
    if not failures:
        write_targets(cfg, run, manifests)
    groups_left_out = write_groups(cfg, run, manifests)
    write_agreement(cfg, run, series)
    write_dynamics(cfg, run, series)
    if cfg.grouping.bootstrap and not failures:
        from workflows.bootstrap import run_bootstrap

        failures += run_bootstrap(cfg, run, manifests)
    timings["group"] = time.perf_counter() - t
    if not failures:
        t = time.perf_counter()
        failures += run_diagnose(cfg, run, manifests)
        timings["diagnose"] = time.perf_counter() - t
    if cfg.ablate and not failures:
        from workflows.ablate import run_ablate

        mark_stage(run, "ablate", timings, run_id=run_id, study=cfg.study)
        t = time.perf_counter()
        failures += run_ablate(cfg, run, manifests, num_gpus=gpus)
        timings["ablate"] = time.perf_counter() - t
    if cfg.skip and not failures:
        from workflows.skip import run_skip

        mark_stage(run, "skip", timings, run_id=run_id, study=cfg.study)
        t = time.perf_counter()
        run_skip(cfg, run, manifests)
        timings["skip"] = time.perf_counter() - t
    timings["total_before_report"] = time.perf_counter() - t_start
    status = {"run_id": run_id, "study": cfg.study, "code_version": version, "timings": timings,
              "tiles_total": plan.tiles_total, "tiles_reused": plan.tiles_reused, "pairs_total": plan.total,
              "failures": failures, "groups_left_out": groups_left_out,
              "ray": {"cpus": cluster_cpus(), "gpus": cluster_gpus()}, "compare_usage": compare_usage,
              "status": "failed" if failures else "complete", "stage": "done"}
    run.write_json(layout.RUN, status)
    t = time.perf_counter()
    report_uri = build_report(run)
    timings["report"] = time.perf_counter() - t
    run.write_json(layout.RUN, status)
    result = RunResult(run.uri, report_uri, plan.tiles_total, plan.tiles_reused, failures, timings)
    if failures:
        raise StudyFailed(f"{len(failures)} task(s) failed; finished work is stored under {run.url()} and a rerun "
                          f"retries only what is missing:\n  " + "\n  ".join(failures[:10]))
    return result
