"""Skip-intervention stage: the KL matrix of a causal LM and each measure's agreement with it.

``layout.skip_kl`` is the (L+1) x (L+1) matrix of ``layergw.interventions.skip.skip_kl_matrix``
(index 0 the embeddings, i the output of block i: the order of the hf family's ``points: blocks``);
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
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from layergw import families
    from layergw.data.text import load_text
    from layergw.families.hf import resolve
    from layergw.interventions.skip import skip_kl_matrix
    from layergw.torchkit.device import resolve_device

    device = resolve_device("auto")
    with tempfile.TemporaryDirectory(prefix="layergw-skip-") as tmp:
        checkpoint = model.checkpoint
        if checkpoint.startswith("train:"):
            from workflows.train import local_checkpoint

            checkpoint = local_checkpoint(store, checkpoint, families.get(model.family), Path(tmp))
        folder = resolve(checkpoint)
        lm = AutoModelForCausalLM.from_pretrained(folder)
        tokenizer = AutoTokenizer.from_pretrained(folder)
    texts = list(load_text(**spec.data).texts)
    kl = skip_kl_matrix(lm, tokenizer, texts, max_length=spec.max_length, batch_size=spec.batch_size,
                        positions=spec.positions, device=device)
    store.write_array(path, kl)
    return kl.tolist()


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
        if model.family != "hf":
            raise ConfigError(f"skip: model {spec.model!r} is of family {model.family!r}; the skip check needs a "
                              "causal LM of family hf")
        kl = np.asarray(ray.get(skip_task.remote(run, spec, model)))
        n_points = len(manifests[spec.model].points)
        if n_points != kl.shape[0]:
            raise ConfigError(f"skip: model {spec.model!r} has {n_points} representation points but the KL matrix "
                              f"covers {kl.shape[0]} (embeddings + blocks); use params: {{points: blocks}} and "
                              "points: all for this model")
        matrices, params = {}, {}
        for measure in cfg.measures:
            pairs = run.read_tables(layout.pairs_dir(spec.model, measure.key), PAIRS)
            if pairs is None:
                continue
            M = symmetrize(pair_matrix(pairs, spec.model, measure.name, n_points))
            label = measure.name if not measure.params else f"{measure.name} {json.dumps(measure.params, sort_keys=True)}"
            matrices[label] = (M, pair_kind(pairs, spec.model, measure.name))
            params[label] = measure.params_json
        rows = agreement_table(matrices, kl)
        for r in rows:
            r["params"] = params[r["measure"]]
        run.write_json(layout.skip_agreement(spec.model),
                       {"model": spec.model, "positions": spec.positions, "data": spec.data, "rows": rows})
        log.info("skip check of %s: %s", spec.model,
                 ", ".join(f"{r['measure']} {r['mean']:.2f}" for r in rows))
