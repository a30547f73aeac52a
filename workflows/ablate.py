"""Ablation stage: the pruning and freezing grid of each listed model, one Ray task per cell.

For each ``ablate`` entry the grid holds the checkpoint as trained (measured, not trained: the
reference the full model's cell is checked against), the full model, depth 0, every group boundary of
every measure's groupings (the whole blocks before it) and the configured depths; pruning
takes each selector at each depth. Cells that train the same network (pruning to every block
is freezing at k = 0; a selector may pick the first N blocks) run as one task. A cell's rows are written to one file when it finishes
(``layout.ablation_cell``), so a killed study resumes with the missing cells only, and
``ablations.parquet`` gathers them with each cell exactly once. A running cell's fine-tuning
saves its progress in the cell's working folder (``layout.ablation_work``, mirrored to an
object store as it runs), so a cell whose worker or node is lost resumes where it was; the
folder is removed once the cell's rows are written.
"""
from __future__ import annotations

import logging
import tempfile
from pathlib import Path

import ray

from layergw import layout
from workflows.config import AblateSpec, ConfigError, InputsSpec, ModelSpec, StudyConfig
from workflows.extract import Manifest
from workflows.sync import remove_quietly

log = logging.getLogger(__name__)


def _load(store, spec: ModelSpec, tmp: Path):
    from layergw import families

    family = families.get(spec.family)
    checkpoint = spec.checkpoint
    if checkpoint.startswith("train:"):
        from workflows.train import local_checkpoint

        checkpoint = local_checkpoint(store, checkpoint, family, tmp)
    return family, family.load(checkpoint, **spec.params)


#: inputs the selectors' block statistics use at most (text models count every token)
STATS_INPUTS = 256


@ray.remote(num_cpus=1)
def block_stats_task(store, spec: ModelSpec, inputs: InputsSpec) -> dict:
    """Block Influence and angular distances of one model on (at most 256 of) the study's
    inputs, drawn as extraction draws them; stored once."""
    from layergw.inputs import input_indices, split_pool
    from layergw.interventions.ablate import angular_distances, block_influence
    from layergw.torchkit.device import resolve_device

    path = layout.ablation_blocks(spec.id)
    if store.exists(path):
        return store.read_json(path)
    with tempfile.TemporaryDirectory(prefix="layergw-ablate-") as tmp:
        _, model = _load(store, spec, Path(tmp))
    pool = split_pool(model.splits(), inputs.split, f"model {spec.id!r}")
    indices = input_indices(model.n_inputs(), min(inputs.n, STATS_INPUTS), inputs.seed, pool)
    states = model.block_states(indices, device=resolve_device("auto"))
    stats = {"influence": block_influence(states).tolist(), "angular": angular_distances(states).tolist(),
             "rows": int(states[0].shape[0])}
    store.write_json(path, stats)
    return stats


@ray.remote(num_cpus=1)
def cell_task(store, spec: ModelSpec, cells: list, params: dict, n_blocks: int) -> int:
    """Run one ablation for cells that train the same network and write each cell's rows;
    return how many."""
    from layergw.interventions.ablate import cell_rows
    from layergw.results import ABLATIONS, table
    from layergw.torchkit.device import resolve_device

    from workflows.runtime import worker_logging
    from workflows.sync import working_folder

    worker_logging()
    work = layout.ablation_work(spec.id, work_name(cells[0].trains, params))
    n = 0
    with tempfile.TemporaryDirectory(prefix="layergw-ablate-") as tmp:  # holds a downloaded checkpoint
        family, model = _load(store, spec, Path(tmp))
        with working_folder(store, work, f"ablate-{spec.id}", discard=True) as folder:
            metrics = family.ablate(model, cells[0].ablation, params, resolve_device("auto"), workdir=folder)
            for cell in cells:
                rows = cell_rows(spec.id, cell, metrics, n_blocks, spec.checkpoint)
                store.write_table(layout.ablation_cell(spec.id, cell.name), table(rows, ABLATIONS))
                n += len(rows)
    return n


def work_name(trains: tuple, params: dict) -> str:
    """The working folder of the network a task trains (kept blocks, first trained block,
    seed) under ``params``: the same for every attempt, another one when the params change,
    so a saved state is never resumed under another recipe."""
    import hashlib
    import json

    keep, first_trained, seed = trains
    digest = hashlib.sha256(json.dumps(params, sort_keys=True, default=str).encode()).hexdigest()[:8]
    return f"keep{'.'.join(map(str, keep)) or '-none'}-k{first_trained}-s{seed}-{digest}"


@ray.remote(num_cpus=1)
def reference_task(store, spec: ModelSpec, params: dict, n_blocks: int) -> int:
    """Measure the checkpoint as trained, as the cells are, and write its rows (none where the
    family cannot); return how many."""
    from layergw.interventions.ablate import REFERENCE, reference_rows
    from layergw.results import ABLATIONS, table
    from layergw.torchkit.device import resolve_device

    with tempfile.TemporaryDirectory(prefix="layergw-ablate-") as tmp:
        family, model = _load(store, spec, Path(tmp))
        rows = reference_rows(spec.id, family.reference(model, params, resolve_device("auto")), n_blocks,
                              spec.checkpoint)
    store.write_table(layout.ablation_cell(spec.id, REFERENCE), table(rows, ABLATIONS))
    return len(rows)


def plan_model(entry: AblateSpec, where: str, manifest: Manifest, groups, stats: dict | None) -> list:
    """The cells of one ``ablate`` entry."""
    import numpy as np

    from layergw.interventions.ablate import boundary_cuts, plan_cells

    if not manifest.n_blocks:
        raise ConfigError(f"{where}: model {entry.model!r} has no blocks to prune or freeze")
    cuts = []
    if groups is not None and len(groups):
        depths = {p.layer_index: p.depth for p in manifest.points}
        cuts = [c for cs in boundary_cuts(groups[groups["model"] == entry.model], depths).values() for c in cs]
    influence = np.asarray(stats["influence"]) if stats else None
    angular = np.asarray(stats["angular"]) if stats else None
    try:
        cells = plan_cells(manifest.n_blocks, entry.ablations, [*cuts, *entry.depths], entry.selectors, entry.seeds,
                           influence=influence, angular=angular, where=where)
    except ValueError as e:
        raise ConfigError(str(e)) from None
    fewest = int(manifest.describe.get("min_blocks") or 0)
    runnable = [c for c in cells if len(c.ablation.keep) >= fewest]
    if len(runnable) < len(cells):
        log.info("%s: prunes to fewer than %d block(s) left out: the model's own forward needs that many", where,
                 fewest)
    return runnable


def run_ablate(cfg: StudyConfig, run, manifests: dict[str, Manifest], num_gpus: float = 0.0) -> list[str]:
    """Every cell of every ``ablate`` entry not yet in the store; gathers ablations.parquet.
    Returns the failures (the finished cells are stored)."""
    import pyarrow as pa

    from layergw.interventions.ablate import REFERENCE, STATE_SELECTORS
    from layergw.results import ABLATIONS
    from workflows.compare import WorkItem, run_items

    specs = {m.id: m for m in cfg.models}
    groups = run.read_table(layout.GROUPS).to_pandas() if run.exists(layout.GROUPS) else None
    items, paths = [], []
    owner: dict[str, str] = {}  # cell file -> model
    for k, entry in enumerate(cfg.ablate):
        where = f"ablate[{k}] ({entry.model})"
        if entry.model not in specs:
            raise ConfigError(f"{where}: model {entry.model!r} became several models (seeds or a series); name one "
                              f"of them: {', '.join(s for s in specs if s.startswith(entry.model))}")
        spec, manifest = specs[entry.model], manifests[entry.model]
        stats = None
        if set(entry.selectors) & set(STATE_SELECTORS):
            try:
                stats = ray.get(block_stats_task.remote(run, spec, cfg.inputs))
            except ray.exceptions.RayTaskError as e:
                cause = getattr(e, "cause", None) or e
                if not isinstance(cause, ValueError):
                    raise
                raise ConfigError(f"{where}: selectors {', '.join(STATE_SELECTORS)}: {cause}") from None
        gpus = entry.num_gpus if entry.num_gpus is not None else num_gpus
        task = cell_task.options(num_gpus=gpus) if gpus else cell_task
        ref = layout.ablation_cell(entry.model, REFERENCE)
        if ref not in paths:
            paths.append(ref)
            owner[ref] = entry.model
            if not run.exists(ref):
                measure = reference_task.options(num_gpus=gpus) if gpus else reference_task
                items.append(WorkItem((entry.model, "ablate"), 1,
                                      lambda spec=spec, entry=entry, n=manifest.n_blocks, measure=measure:
                                      measure.remote(run, spec, entry.params, n),
                                      f"the checkpoint of {entry.model} as trained"))
        same: dict[tuple, list] = {}
        for cell in plan_model(entry, where, manifest, groups, stats):
            path = layout.ablation_cell(entry.model, cell.name)
            if path in paths:
                continue
            paths.append(path)
            owner[path] = entry.model
            if not run.exists(path):
                same.setdefault(cell.trains, []).append(cell)
        for cells in same.values():
            items.append(WorkItem((entry.model, "ablate"), len(cells),
                                  lambda spec=spec, cells=cells, entry=entry, n=manifest.n_blocks:
                                  task.remote(run, spec, cells, entry.params, n),
                                  f"ablation {', '.join(c.name for c in cells)} of {entry.model}"))
    from workflows.progress import Progress

    todo = sum(it.size for it in items)
    log.info("ablations: %d cells to run in %d tasks (cells that train the same network share one)", todo,
             len(items))
    progress = Progress("ablate", len(paths), len(paths) - todo, "cells")
    failures = run_items(items, _NoCache(), max(1, len(items)), progress.update)
    done = {p for p in paths if run.exists(p)}
    for model in dict.fromkeys(entry.model for entry in cfg.ablate):
        if all(p in done for p in paths if owner[p] == model):
            remove_quietly(run, layout.ablation_work(model, ""))  # left by attempts whose grouping changed
    parts = [run.read_table(p) for p in paths if p in done]
    if parts:
        gathered = pa.concat_tables([p.select(ABLATIONS.names).cast(ABLATIONS) for p in parts])
        run.write_table(layout.ABLATIONS, gathered)
        write_ablation_tables(run, gathered)
    return failures


def write_ablation_tables(run, gathered) -> None:
    """The knees, prune plan, measure ranking and accuracy summary read from the gathered grid."""
    from layergw.interventions.ablate import ablation_tables
    from layergw.results import ABLATION_TABLES, from_frame

    groups = run.read_table(layout.GROUPS).to_pandas() if run.exists(layout.GROUPS) else None
    points = run.read_table(layout.POINTS).to_pandas()
    for name, frame in ablation_tables(gathered, groups, points).items():
        run.write_table(layout.ABLATION_TABLES[name], from_frame(frame, ABLATION_TABLES[name]))


class _NoCache:
    """``run_items`` frees prepared geometry of finished groups; ablation cells share none."""

    def drop(self, *_: object) -> None:
        pass
