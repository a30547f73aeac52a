"""Skip-intervention stage: the KL matrix of a causal LM and each measure's agreement with it.

``layout.skip_kl`` is the (L+1) x (L+1) matrix of ``layergw.interventions.skip.skip_kl_matrix``
(index 0 the stream entering block 1, i the output of block i; :func:`residual_stream_points` picks those
points of the model: :func:`residual_stream_points`);
``layout.skip_agreement`` the row-wise Spearman of every measure variant's matrix with it.
"""
from __future__ import annotations

import json
import logging
import tempfile
from pathlib import Path

import ray

from layergw import layout
from workflows.config import ConfigError, ModelSpec, SkipSpec, StudyConfig
from workflows.extract import Manifest

log = logging.getLogger(__name__)


@ray.remote(num_cpus=1)
def skip_task(store, spec: SkipSpec, model: ModelSpec) -> list:
    """Compute and store the KL matrix unless it is there; return it as nested lists."""
    path = layout.skip_kl(spec.model)
    if store.exists(path):
        return store.read_array(path).tolist()
    from layergw import families
    from layergw.data.text import load_text
    from layergw.interventions.skip import skip_kl_matrix
    from layergw.torchkit.device import resolve_device

    device = resolve_device("auto")
    family = families.get(model.family)
    with tempfile.TemporaryDirectory(prefix="layergw-skip-") as tmp:
        checkpoint = model.checkpoint
        if checkpoint.startswith("train:"):
            from workflows.train import local_checkpoint

            checkpoint = local_checkpoint(store, checkpoint, family, Path(tmp))
        lm = family.causal_lm(checkpoint, **model.params)
    texts = list(load_text(**spec.data).texts)
    kl = skip_kl_matrix(lm, texts, max_length=spec.max_length, batch_size=spec.batch_size,
                        positions=spec.positions, device=device)
    store.write_array(path, kl)
    return kl.tolist()


def residual_stream_points(manifest: Manifest) -> list[int]:
    """The indices of a model's residual-stream points in the KL matrix's order: the point at depth
    0 (the embeddings, or block 0's Resid-Pre), then each block's output (its Resid-Post)."""
    n_blocks = manifest.n_blocks or max(int(p.depth or 0) for p in manifest.points)
    chosen = []
    for d in range(n_blocks + 1):
        at = [p for p in manifest.points if p.depth == float(d)]
        if d > 0:
            at = [p for p in at if p.role == "Resid-Post"] or at
        if not at:
            raise ConfigError(f"skip: model {manifest.model!r} has no point at the output of "
                              f"{'the embeddings' if d == 0 else f'block {d}'}; the skip check compares the residual "
                              f"stream before block 1 and after every block (points: blocks or fine, with those "
                              f"points selected)")
        chosen.append(at[0].layer_index)
    return chosen


def run_skip(cfg: StudyConfig, run, manifests: dict[str, Manifest]) -> None:
    """For each skip check: the KL matrix (a Ray task) and the agreement table of every measure."""
    import numpy as np

    from layergw.grouping import pair_kind, pair_matrix, symmetrize
    from layergw.interventions.skip import agreement_table
    from layergw.results import PAIRS

    specs = {m.id: m for m in cfg.models}
    for spec in cfg.skip:
        if spec.model not in specs:
            raise ConfigError(f"skip: model {spec.model!r} became several models (seeds or a series); name one of "
                              f"them: {', '.join(m for m in specs if m.startswith(spec.model))}")
        model = specs[spec.model]
        from layergw import families
        from layergw.families.base import Family

        if type(families.get(model.family)).causal_lm is Family.causal_lm:
            raise ConfigError(f"skip: model {spec.model!r} is of family {model.family!r}, which has no causal language "
                              f"models; the skip check needs one (family hf)")
        stream = residual_stream_points(manifests[spec.model])
        kl = np.asarray(ray.get(skip_task.remote(run, spec, model)))
        if len(stream) != kl.shape[0]:
            raise ConfigError(f"skip: model {spec.model!r} has {len(stream) - 1} blocks in its points but the KL "
                              f"matrix covers {kl.shape[0] - 1}")
        n_points = len(manifests[spec.model].points)
        matrices, params = {}, {}
        for measure in cfg.measures:
            pairs = run.read_tables(layout.pairs_dir(spec.model, measure.key), PAIRS)
            if pairs is None:
                continue
            M = symmetrize(pair_matrix(pairs, spec.model, measure.name, n_points))[np.ix_(stream, stream)]
            label = measure.name if not measure.params else f"{measure.name} {json.dumps(measure.params, sort_keys=True)}"
            matrices[label] = (M, pair_kind(pairs, spec.model, measure.name))
            params[label] = measure.params_json
        rows = agreement_table(matrices, kl)
        for r in rows:
            r["params"] = params[r["measure"]]
        run.write_json(layout.skip_agreement(spec.model),
                       {"model": spec.model, "positions": spec.positions, "data": spec.data, "rows": rows,
                        "points": [manifests[spec.model].points[i].layer for i in stream]})
        log.info("skip check of %s: %s", spec.model,
                 ", ".join(f"{r['measure']} {r['mean']:.2f}" for r in rows))
