"""The main job: extract -> compare (+ targets) -> group -> report, resumable at every stage."""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

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


def check_plan(cfg: StudyConfig) -> None:
    """Fail before any cluster work on an unknown measure, parameter or model family."""
    from layergw import measures, models

    specs: list[tuple[str, MeasureSpec]] = [(f"measures[{i}]", m) for i, m in enumerate(cfg.measures)]
    if cfg.targets.enabled:
        specs.append(("targets.measure", cfg.targets.measure))
    for where, m in specs:
        try:
            measures.get(m.name, **m.params)
        except ValueError as e:
            raise ConfigError(f"{where}: {e}") from None
    for i, spec in enumerate(cfg.models):
        try:
            models.MODELS.factory(spec.family)
            models.fingerprint(spec.family, spec.checkpoint)
        except ValueError as e:
            raise ConfigError(f"models[{i}] ({spec.id}): {e}") from None


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


def run_study(cfg: StudyConfig, *, store_uri: str | None = None, address: str | None = None,
              show_progress: bool = True) -> RunResult:
    from layergw.report import build_report
    from layergw.results import GROUPS, POINTS, TARGETS, table
    from layergw.store import ResultStore
    from workflows.compare import GeometryCache, WorkItem, compare_tile_task, make_tiles, run_items, tile_path
    from workflows.extract import run_extract
    from workflows.group import group_rows
    from workflows.runtime import cluster_cpus, cluster_gpus, code_version, init_ray
    from workflows.targets import target_task

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

    t = time.perf_counter()
    gpus = cfg.ray.extract_num_gpus if cfg.ray.extract_num_gpus is not None else (1.0 if cluster_gpus() > 0 else 0.0)
    manifests = run_extract(cfg.models, cfg.probe, run, num_gpus=gpus)
    point_rows = [r for mid in manifests for r in manifests[mid]["points"]]
    run.write_table("points.parquet", table(point_rows, POINTS))
    timings["extract"] = time.perf_counter() - t

    t = time.perf_counter()
    config_hashes = {m.key: cfg.results_hash(m) for m in cfg.measures}
    cache = GeometryCache(run)
    items: list[WorkItem] = []
    tiles_total = tiles_skipped = pairs_total = pairs_done = 0
    for spec in cfg.models:
        man = manifests[spec.id]
        names = [p["layer"] for p in man["points"]]
        for measure in cfg.measures:
            meta = {"study": cfg.study, "run_id": run_id, "model": spec.id, "seed": spec.seed,
                    "checkpoint": spec.checkpoint_label, "measure": measure.name, "params": dict(measure.params),
                    "n": man["n"], "config_hash": config_hashes[measure.key], "code_version": version, "names": names}
            done = set(run.list_files(f"pairs/{spec.id}/{measure.key}", ".parquet"))
            for tile in make_tiles(len(names), cfg.compare.tile_size):
                path = tile_path(spec.id, measure.key, tile)
                tiles_total += 1
                pairs_total += len(tile.pairs)
                if path in done:
                    tiles_skipped += 1
                    pairs_done += len(tile.pairs)
                    continue
                layers = tile.layers

                def submit(spec=spec, measure=measure, path=path, meta=meta, tile=tile, layers=layers):
                    geoms = [cache.ref(spec.id, measure, k) for k in layers]
                    return compare_tile_task.remote(run, path, meta, list(tile.pairs), layers, *geoms)

                items.append(WorkItem((spec.id, measure.key), len(tile.pairs), submit, f"{spec.id}/{measure.key} {path}"))
    target_results: dict[str, list[dict]] = {}
    if cfg.targets.enabled:
        tm = cfg.targets.measure
        for spec in cfg.models:
            man = manifests[spec.id]
            for target in man["targets"]:
                out = f"targets/{spec.id}/{tm.key}/{target}.parquet"
                pairs_total += len(man["points"])
                if run.exists(out):
                    pairs_done += len(man["points"])
                    continue

                def submit(spec=spec, target=target, man=man):
                    geoms = [cache.ref(spec.id, tm, p["layer_index"]) for p in man["points"]]
                    return target_task.remote(run, spec.id, target, tm.name, dict(tm.params), man["points"], *geoms)

                def on_done(rows, out=out):
                    run.write_table(out, table(rows, TARGETS))

                items.append(WorkItem((spec.id, tm.key), len(man["points"]), submit,
                                      f"target {target} of {spec.id}", on_done))
    if tiles_skipped:
        log.info("%d of %d tiles already finished in %s, skipping them", tiles_skipped, tiles_total, run.url("pairs"))
    # targets first within a model's measure group so its geometry is freed with the last tile
    items.sort(key=lambda it: (it.group, not it.label.startswith("target")))
    max_in_flight = cfg.compare.max_in_flight or 2 * cluster_cpus()
    with _progress_bar(pairs_total, pairs_done, show_progress) as bar:
        failures = run_items(items, cache, max_in_flight, bar.update)
    timings["compare"] = time.perf_counter() - t
    log.info("prepared %d layer geometries, ran %d tasks", cache.prepared, len(items))

    t = time.perf_counter()
    targets = run.read_tables("targets", TARGETS)
    if targets is not None:
        run.write_table("targets.parquet", targets)
    rows, groups_skipped = [], []
    for spec in cfg.models:
        display = {p["layer_index"]: p["display"] for p in manifests[spec.id]["points"]}
        names = [p["layer"] for p in manifests[spec.id]["points"]]
        for measure in cfg.measures:
            try:
                rows += group_rows(run, spec.id, measure, names, display, cfg.grouping)
            except ValueError as e:
                groups_skipped.append(f"groups of {spec.id}/{measure.key}: {e}")
                log.warning("%s", groups_skipped[-1])
    run.write_table("groups.parquet", table(rows, GROUPS))
    timings["group"] = time.perf_counter() - t

    t = time.perf_counter()
    timings["total_before_report"] = time.perf_counter() - t_start
    status = {"run_id": run_id, "study": cfg.study, "code_version": version, "timings": timings,
              "tiles_total": tiles_total, "tiles_skipped": tiles_skipped, "pairs_total": pairs_total,
              "failures": failures, "groups_skipped": groups_skipped, "ray": {"cpus": cluster_cpus(), "gpus": cluster_gpus()},
              "status": "failed" if failures else "complete"}
    run.write_json("run.json", status)
    report_uri = build_report(run)
    timings["report"] = time.perf_counter() - t
    status["timings"] = timings
    run.write_json("run.json", status)
    result = RunResult(run.uri, report_uri, tiles_total, tiles_skipped, failures, timings)
    if failures:
        raise StudyFailed(f"{len(failures)} task(s) failed; finished work is stored under {run.url()} and a rerun "
                          f"retries only what is missing:\n  " + "\n  ".join(failures[:10]))
    return result
