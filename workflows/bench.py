"""Benchmark suites; each writes one Parquet table of timings under the output folder and,
with a store, appends its figures to the store's history (``workflows.bench_history``).

Timings are for comparing ratios measured side by side in one run, not absolute claims. The
figures a history tracks: GW seconds per pair and POT's time over layergw's at each n
(``gw``), the compare stage's pairs per second on a fixed study (``compare``), extraction
samples per second (``extract``) and the demo's wall time (``demo``); ``all`` runs them.
"""
from __future__ import annotations

import logging
import platform
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

log = logging.getLogger(__name__)

#: the gw suite's n: the demo's range up to twice the paper's 1000
GW_SIZES = (256, 512, 1000, 2000)
SUITES = ("gw", "gw-model", "gw-batch", "measures", "compare", "extract", "extract-memory", "demo", "memory", "trainer",
          "isometry", "scale", "extract-shards", "all")
#: extract-memory: probe-set sizes, and the small text model it runs (a random BERT, Yelp test sentences)
EXTRACT_MEMORY_SIZES = (1_000, 10_000, 100_000)
#: gw-model: layer pairs of a shipped trained model (the paper's Model L) at the paper's n
GW_MODEL, GW_MODEL_SIZES, GW_MODEL_PAIRS = "builtin:model_L", (1000,), 12
HISTORY_SUITES = ("gw", "compare", "extract", "demo")
#: gw-batch: pairs solved as one batch, and its float32 variant (the GPU's fast path)
GW_BATCH_DTYPES = ("float64", "float32")


#: Parameter settings timed besides each measure's defaults (when the measure has them).
VARIANTS: list[tuple[str, dict]] = [
    ("gw", {"normalize": "mean"}),
    ("gw", {"init": "best"}),
    ("cka", {"kernel": "rbf"}),
    ("cka", {"debiased": True}),
    ("cca", {"variance_kept": 0.99}),
    ("cca", {"weighting": "pwcca"}),
]


def _layer(n: int, d: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, d)) @ rng.standard_normal((d, d)) / np.sqrt(d)


def _target(n: int, classes: int = 10) -> np.ndarray:
    return np.eye(classes)[np.arange(n) % classes]


def measure_cases(names: list[str]) -> list[tuple[str, dict]]:
    """Each named measure with its defaults, plus the VARIANTS of those measures it supports."""
    from layergw import measures

    cases = [(name, {}) for name in names]
    for name, params in VARIANTS:
        if name in names and set(params) <= set(measures.parameters(name)):
            cases.append((name, params))
    return cases


def bench_measures(cases: list[tuple[str, dict]] | list[str], sizes: tuple[int, ...], repeats: int = 3,
                   d: int = 64) -> list[dict]:
    """Median seconds of prepare and of compare per measure variant and n, one BLAS thread.

    Layers are (n, d) correlated Gaussians; probes get a 10-class one-hot target as Y.
    """
    import json

    from threadpoolctl import threadpool_limits

    from layergw import measures

    rows = []
    with threadpool_limits(limits=1):
        for case in cases:
            name, params = (case, {}) if isinstance(case, str) else case
            m = measures.get(name, **params)
            for n in sizes:
                X = _layer(n, d, 0)
                Y = _target(n) if m.target else _layer(n, d, 1)
                prep, comp, iters = [], [], []
                for _ in range(repeats):
                    t = time.perf_counter()
                    gx = m.prepare(X)
                    prep.append(time.perf_counter() - t)
                    gy = m.prepare(Y)
                    t = time.perf_counter()
                    c = m.compare(gx, gy)
                    comp.append(time.perf_counter() - t)
                    iters.append(c.iterations if c.iterations is not None else -1)
                rows.append({"suite": "measures", "measure": name, "params": json.dumps(params, sort_keys=True),
                             "n": n, "d": d, "repeats": repeats,
                             "prepare_s": float(np.median(prep)), "compare_s": float(np.median(comp)),
                             "iterations": int(np.median(iters)), "value": float(c.value)})
                log.info("%s %s n=%d prepare %.4fs compare %.4fs", name, params or "", n,
                         rows[-1]["prepare_s"], rows[-1]["compare_s"])
    return rows


def rows_markdown(rows: list[dict]) -> str:
    """Any suite's rows as a Markdown table, one line per row (numbers to 4 significant digits)."""
    keys = [k for k in dict.fromkeys(k for r in rows for k in r) if k not in ("timestamp", "machine", "processor")]
    cell = lambda v: f"{v:.4g}" if isinstance(v, float) else str(v)  # noqa: E731
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    return "\n".join(lines + ["| " + " | ".join(cell(r.get(k, "")) for k in keys) + " |" for r in rows]) + "\n"


def markdown_table(rows: list[dict]) -> str:
    """The measures suite as a Markdown table: one line per measure variant, columns per n."""
    sizes = sorted({r["n"] for r in rows})
    head = "| measure | params | " + " | ".join(f"prepare n={n} (s) | compare n={n} (s)" for n in sizes) + " |"
    lines = [head, "|" + "---|" * (2 + 2 * len(sizes))]
    keyed: dict[tuple[str, str], dict[int, dict]] = {}
    for r in rows:
        keyed.setdefault((r["measure"], r["params"]), {})[r["n"]] = r
    for (name, params), by_n in keyed.items():
        cells = []
        for n in sizes:
            r = by_n.get(n)
            cells += [f"{r['prepare_s']:.4g}", f"{r['compare_s']:.4g}"] if r else ["", ""]
        shown = "" if params == "{}" else f"`{params}`"
        lines.append(f"| {name} | {shown} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


#: the bench's pivot cap: high enough that neither solver truncates a step at n = 2000
BENCH_MAX_ITER_EMD = 10_000_000


def relu_pair(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Two successive layers of a random ReLU network on Gaussian inputs: the CG takes as
    many steps on them as on trained layers (5 to 25), unlike two Gaussian clouds."""
    rng = np.random.default_rng(seed)
    h = rng.standard_normal((n, 16))
    layers = []
    for d in (32, 48):
        h = np.maximum(h @ rng.standard_normal((h.shape[1], d)) / np.sqrt(h.shape[1]), 0.0)
        layers.append(h)
    return layers[0], layers[1]


def model_pairs(checkpoint: str = GW_MODEL, count: int = GW_MODEL_PAIRS, seed: int = 0):
    """A pair source for :func:`bench_pot`: ``count`` seeded random pairs of distinct points of
    a modular-sum checkpoint, extracted on ``n`` seeded inputs (once per n)."""
    from functools import lru_cache

    from layergw import families
    from layergw.inputs import input_indices

    model = families.get("modsum").load(checkpoint)
    points = model.points()
    rng = np.random.default_rng(seed)
    chosen = [tuple(int(i) for i in rng.choice(len(points), size=2, replace=False)) for _ in range(count)]

    @lru_cache(maxsize=2)
    def reps(n: int) -> dict:
        return model.extract(input_indices(model.n_inputs(), n, seed, None), points)

    def source(n: int, pair: int) -> tuple[np.ndarray, np.ndarray]:
        i, j = chosen[pair]
        r = reps(n)
        return r[points[i].name], r[points[j].name]

    source.labels = [f"{points[i].name} / {points[j].name}" for i, j in chosen]
    source.grid_pairs = len(points) * (len(points) - 1) // 2  # the pairs a run over all its points computes
    return source


def bench_pot(sizes: tuple[int, ...], repeats: int = 3, pairs: int = 2, source=relu_pair) -> list[dict]:
    """layergw's GW (its default, lean solver) and POT's ``gromov_wasserstein2`` side by side
    on the same pairs, one thread, the same pivot cap; each row one pair at one n. ``source(n,
    pair)`` gives the pair (default: successive layers of a random ReLU network)."""
    import ot
    from threadpoolctl import threadpool_limits

    from layergw import measures
    from layergw.measures.gw import distance_matrix

    rows = []
    gw = measures.get("gw", max_iter_emd=BENCH_MAX_ITER_EMD)
    with threadpool_limits(limits=1):
        for n in sizes:
            for pair in range(pairs):
                X, Y = source(n, pair)
                gx, gy = gw.prepare(X), gw.prepare(Y)
                C1, C2 = distance_matrix(X), distance_matrix(Y)
                p = np.full(n, 1.0 / n)
                ours, theirs = [], []
                for _ in range(repeats):
                    t = time.perf_counter()
                    got = gw.compare(gx, gy)
                    ours.append(time.perf_counter() - t)
                    t = time.perf_counter()
                    ref = float(ot.gromov.gromov_wasserstein2(C1, C2, p, p, "square_loss",
                                                              numItermaxEmd=BENCH_MAX_ITER_EMD))
                    theirs.append(time.perf_counter() - t)
                row = {"n": n, "pair": pair, "layers": getattr(source, "labels", [None] * (pair + 1))[pair],
                       "solver": gw.solver, "layergw_s": float(np.median(ours)),
                       "pot_s": float(np.median(theirs)), "value": got.value, "pot_value": ref,
                       "relative_difference": abs(got.value - ref) / abs(ref) if ref else abs(got.value),
                       "iterations": got.iterations, "converged": got.converged, "repeats": repeats,
                       "grid_pairs": getattr(source, "grid_pairs", None)}
                row["ratio"] = row["pot_s"] / row["layergw_s"]
                rows.append(row)
                log.info("gw n=%d pair %d: layergw %.4fs, POT %.4fs (%.2fx), values %.3g apart", n, pair,
                         row["layergw_s"], row["pot_s"], row["ratio"], row["relative_difference"])
    return rows


def bench_gw_batch(sizes: tuple[int, ...] = GW_MODEL_SIZES, pairs: int = GW_MODEL_PAIRS, source=None,
                   device: str = "auto") -> list[dict]:
    """Throughput of ``gw_batch`` (all ``pairs`` as one batch, on ``device``: a GPU when torch
    sees one) against the exact ``gw`` on one CPU thread, on the same pairs (default: Model L's
    layers) with the same geometry (normalize "mean"), and how the two rank the pairs. One
    row per (n, solver); the batch is timed after a warm-up batch of two pairs."""
    from scipy.stats import spearmanr
    from threadpoolctl import threadpool_limits

    from layergw import measures
    from layergw.torchkit.device import resolve_device

    source = source or model_pairs(count=pairs)
    exact = measures.get("gw", normalize="mean")
    rows = []
    for n in sizes:
        data = [source(n, k) for k in range(pairs)]
        with threadpool_limits(limits=1):
            t = time.perf_counter()
            ref = [exact.score(X, Y) for X, Y in data]
            exact_s = time.perf_counter() - t
        rows.append({"n": n, "solver": "gw (exact, lean)", "device": "cpu, one thread", "dtype": "float64",
                     "pairs": pairs, "seconds": exact_s, "pairs_per_s": pairs / exact_s, "spearman": 1.0,
                     "converged": pairs})
        log.info("gw-batch n=%d: exact gw %.3f s per pair", n, exact_s / pairs)
        for dtype in GW_BATCH_DTYPES:
            batch = measures.get("gw_batch", device=device, dtype=dtype)
            geoms = [(batch.prepare(X), batch.prepare(Y)) for X, Y in data]
            batch.compare_many(geoms[:2])  # warm-up: kernels, allocator, handles
            t = time.perf_counter()
            got = batch.compare_many(geoms)
            seconds = time.perf_counter() - t
            rows.append({"n": n, "solver": f"gw_batch (epsilon {batch.epsilon})",
                         "device": resolve_device(device), "dtype": dtype, "pairs": pairs, "seconds": seconds,
                         "pairs_per_s": pairs / seconds,
                         "spearman": float(spearmanr([c.value for c in got], ref).statistic),
                         "converged": sum(c.converged for c in got)})
            log.info("gw-batch n=%d: gw_batch %s on %s %.3f s per pair, rank correlation with gw %.3f", n, dtype,
                     rows[-1]["device"], seconds / pairs, rows[-1]["spearman"])
    return rows


def gw_markdown(rows: list[dict]) -> str:
    """One line per n: seconds per pair of each solver (mean over pairs), the ratio of the
    summed times, the largest relative difference of values and the CG steps."""
    lines = ["| n | pairs | POT (s/pair) | layergw (s/pair) | POT / layergw | largest relative difference | CG steps |",
             "|---|---|---|---|---|---|---|"]
    for n in dict.fromkeys(r["n"] for r in rows):
        at = [r for r in rows if r["n"] == n]
        pot_s, ours = sum(r["pot_s"] for r in at), sum(r["layergw_s"] for r in at)
        steps = ", ".join(str(r["iterations"]) for r in at)
        lines.append(f"| {n} | {len(at)} | {pot_s / len(at):.3g} | {ours / len(at):.3g} | {pot_s / ours:.2f}x | "
                     f"{max(r['relative_difference'] for r in at):.1e} | {steps} |")
    grids = [(r["n"], r["grid_pairs"]) for r in rows if r.get("grid_pairs")]
    for n, grid in dict.fromkeys(grids):
        mean = float(np.mean([r["layergw_s"] for r in rows if r["n"] == n]))
        lines.append(f"\nAt n = {n} and this mean, the model's whole grid ({grid:,} pairs) takes about "
                     f"{grid * mean / 2 / 60:.0f} minutes of two cores' time, one pair on each.")
    return "\n".join(lines) + "\n"


def gw_plot(rows: list[dict], path: str) -> None:
    """Seconds per pair against n, POT and layergw (mean over pairs)."""
    from layergw.plot import curves_png

    sizes = list(dict.fromkeys(r["n"] for r in rows))
    mean = {k: [float(np.mean([r[k] for r in rows if r["n"] == n])) for n in sizes] for k in ("pot_s", "layergw_s")}
    ratio = sum(r["pot_s"] for r in rows) / sum(r["layergw_s"] for r in rows)
    curves_png(sizes, {"POT gromov_wasserstein2": mean["pot_s"], f"layergw gw ({rows[0]['solver']})": mean["layergw_s"]},
               path, title=f"GW per pair, one thread (POT / layergw over all pairs: {ratio:.2f}x)", xlabel="n",
               ylabel="seconds per pair", log_scale=True)


def _figure(suite: str, figure: str, value: float, unit: str, better: str) -> dict:
    return {"suite": suite, "figure": figure, "value": float(value), "unit": unit, "better": better}


def _gw_figures(suite: str, rows: list[dict], pair: str, on: str) -> list[dict]:
    """Per n: layergw's mean seconds per pair, and POT's summed time over layergw's."""
    figs = []
    for n in dict.fromkeys(r["n"] for r in rows):
        at = [r for r in rows if r["n"] == n]
        figs += [_figure(suite, f"gw seconds per {pair}, n={n}", float(np.mean([r["layergw_s"] for r in at])), "s",
                         "lower"),
                 _figure(suite, f"POT time over layergw's{on}, n={n}",
                         sum(r["pot_s"] for r in at) / sum(r["layergw_s"] for r in at), "x", "higher")]
    return figs


def suite_figures(suite: str, sizes: tuple[int, ...] | None = None) -> tuple[list[dict], list[dict]]:
    """(detail rows, history figures) of one history suite."""
    if suite == "gw":
        rows = bench_pot(sizes or GW_SIZES)
        return rows, _gw_figures("gw", rows, "pair", "")
    if suite == "gw-model":
        rows = bench_pot(sizes or GW_MODEL_SIZES, repeats=1, pairs=GW_MODEL_PAIRS, source=model_pairs())
        return rows, _gw_figures("gw-model", rows, "Model L pair", " on Model L pairs")
    if suite == "gw-batch":
        rows = bench_gw_batch(sizes or GW_MODEL_SIZES)
        return rows, [_figure("gw-batch", f"{r['solver']} {r['dtype']} pairs per second on {r['device']}, n={r['n']}",
                              r["pairs_per_s"], "pairs/s", "higher") for r in rows]
    if suite == "extract":
        return _bench_extract()
    if suite == "compare":
        return _bench_study("compare", {"study": "bench", "inputs": {"n": 128, "seed": 0},
                                        "models": [{"id": "model_0", "checkpoint": "builtin:model_0"}],
                                        "measures": ["cka", {"name": "gw", "params": {"normalize": "mean"}}],
                                        "targets": {"enabled": False}, "compare": {"tile_size": 8}})
    if suite == "memory":
        return bench_memory()
    if suite == "extract-memory":
        return bench_extract_memory(sizes or EXTRACT_MEMORY_SIZES)
    if suite == "trainer":
        from workflows.bench_trainer import bench_trainer

        return bench_trainer()
    if suite == "extract-shards":
        from workflows.bench_shards import bench_extract_shards

        return bench_extract_shards()
    if suite == "scale":
        from workflows.bench_scale import SCALE_SIZES, bench_scale

        return bench_scale(sizes or SCALE_SIZES)
    if suite == "isometry":
        from layergw.isometry import synthetic_check

        return synthetic_check(n=(sizes or (1000,))[0]), []
    if suite == "demo":
        import yaml

        config = Path(__file__).resolve().parent.parent / "configs" / "demo.yaml"
        return _bench_study("demo", yaml.safe_load(config.read_text()))
    raise ValueError(f"unknown history suite {suite!r}; valid: {', '.join(HISTORY_SUITES)}")


def bench_memory(counts: tuple[int, ...] = (1, 4, 16), points_per_model: int = 38) -> tuple[list[dict], list[dict]]:
    """Peak resident memory of the study's driver process (``layergw run``, then ``layergw report``
    rebuilt in a fresh process) for studies of 1, 4 and 16 models of 38 points each: grouping
    and the report read the store model by model, so the peak should not grow with the count."""
    import subprocess
    import sys
    import tempfile

    import yaml

    from layergw import families

    rows, figures = [], []
    with tempfile.TemporaryDirectory(prefix="layergw-bench-memory-") as tmp:
        modsum = families.get("modsum")
        modsum.train(None, "tiny", {"task": "f_mod3", "n_blocks": 2, "d_model": 16, "n_heads": 2, "d_head": 8,
                                    "d_mlp": 32, "max_epochs": 3, "eval_every": 1}, 0, Path(tmp) / "tiny", "cpu")
        ckpt = modsum.checkpoint_in(Path(tmp) / "tiny" / "final")
        root = Path(__file__).resolve().parent.parent
        for count in counts:
            cfg = {"study": f"memory{count}", "store": f"{tmp}/runs", "inputs": {"n": 64, "seed": 0},
                   "models": [{"id": f"m{i}", "checkpoint": ckpt} for i in range(count)],
                   "measures": ["cka", "rsm"], "targets": {"enabled": False}}
            path = Path(tmp) / f"memory{count}.yaml"
            path.write_text(yaml.safe_dump(cfg))
            peaks = {}
            for what, argv in (("run", ["run", str(path), "--no-progress"]), ("report", None)):
                if argv is None:
                    run_dir = next((Path(tmp) / "runs" / f"memory{count}").iterdir())
                    argv = ["report", str(run_dir)]
                proc = subprocess.Popen([sys.executable, "-m", "workflows.cli", *argv], cwd=root,
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                peak = 0
                while proc.poll() is None:
                    peak = max(peak, _peak_rss(proc.pid))
                    time.sleep(0.05)
                if proc.returncode:
                    raise RuntimeError(f"memory benchmark: layergw {' '.join(argv)} failed ({proc.returncode})")
                peaks[what] = peak / 2**10
            rows.append({"models": count, "points": count * points_per_model, "run_peak_mib": peaks["run"],
                         "report_peak_mib": peaks["report"]})
            figures += [_figure("memory", f"driver peak RSS, layergw run, {count} models", peaks["run"], "MiB", "lower"),
                        _figure("memory", f"driver peak RSS, layergw report, {count} models", peaks["report"],
                                "MiB", "lower")]
            log.info("memory: %d models: run %.0f MiB, report %.0f MiB", count, peaks["run"], peaks["report"])
    return rows, figures


#: the texts extract-memory runs through the model (a load_text mapping)
EXTRACT_MEMORY_TEXTS = {"source": "yelp", "split": "test"}


def bench_extract_memory(sizes: tuple[int, ...] = EXTRACT_MEMORY_SIZES,
                         texts: dict | None = None) -> tuple[list[dict], list[dict]]:
    """Peak memory and samples per second of one extraction task (the task's own function, in a
    fresh process, into a local store) at each n, streamed and, for comparison, in one pass
    over every input: a 2-block random BERT (hidden 128) on the Yelp test sentences, with its
    three block outputs mean-pooled."""
    import subprocess
    import sys
    import tempfile

    rows, figures = [], []
    root = Path(__file__).resolve().parent.parent
    with tempfile.TemporaryDirectory(prefix="layergw-bench-extract-") as tmp:
        subprocess.run([sys.executable, "-c", "from workflows.bench import _tiny_bert; "
                        f"_tiny_bert({tmp!r}, {texts or EXTRACT_MEMORY_TEXTS!r})"], cwd=root, check=True)
        for n in sizes:
            for mode in ("streamed", "one pass"):
                out = subprocess.run([sys.executable, "-c", "import sys; from workflows.bench import _extract_once; "
                                      f"_extract_once({tmp!r}, {n}, {mode == 'streamed'}, {texts or EXTRACT_MEMORY_TEXTS!r})"],
                                     cwd=root, capture_output=True, text=True)
                if out.returncode:
                    raise RuntimeError(f"extract-memory n={n} ({mode}) failed:\n{out.stderr[-2000:]}")
                peak_kib, seconds = (float(v) for v in out.stdout.split()[-2:])
                row = {"n": n, "mode": mode, "peak_mib": peak_kib / 2**10, "seconds": seconds,
                       "samples_per_s": n / seconds}
                rows.append(row)
                log.info("extract n=%d %s: peak %.0f MiB, %.0f samples/s", n, mode, row["peak_mib"],
                         row["samples_per_s"])
                if mode == "streamed":
                    figures += [_figure("extract-memory", f"extraction task peak RSS, n={n}", row["peak_mib"], "MiB",
                                        "lower"),
                                _figure("extract-memory", f"extraction samples per second, n={n}",
                                        row["samples_per_s"], "1/s", "higher")]
    return rows, figures


def _tiny_bert(folder: str, texts: dict) -> None:
    """A 2-block random BERT with MiniLM's tokenizer (the hf family's ``random:bert``), copied to
    ``folder/bert``."""
    import shutil

    from layergw import families

    model = families.get("hf").load("random:bert", model_config={
        "hidden_size": 128, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 256,
        "max_position_embeddings": 128}, data=texts)
    shutil.copytree(model.path, f"{folder}/bert")


def _extract_once(folder: str, n: int, streamed: bool, texts: dict) -> None:
    """Extract n inputs as the extraction task does (``streamed``) or in one pass over them all;
    prints the process's peak RSS (KiB) and the seconds."""
    import resource

    import torch

    import workflows.extract as extract
    from layergw.store import ResultStore
    from workflows.config import InputsSpec, ModelSpec

    torch.set_num_threads(1)
    if not streamed:
        extract.STREAM_INPUTS = n
    spec = ModelSpec(id=f"bert{n}", family="hf", checkpoint=f"{folder}/bert",
                     params={"data": texts, "max_length": 64, "batch_size": 64})
    store = ResultStore(f"{folder}/store-{n}-{int(streamed)}")
    t0 = time.perf_counter()
    extract.extract_model._function(spec, InputsSpec(n=n, seed=0), store)
    print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, time.perf_counter() - t0)


def _peak_rss(pid: int) -> int:
    """The process's peak resident set so far (VmHWM, KiB; Linux), 0 when it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


def _bench_extract() -> tuple[list[dict], list[dict]]:
    from layergw import families

    model = families.get("modsum").load("builtin:model_0")
    every = np.arange(model.n_inputs())
    t = time.perf_counter()
    model.extract(every, model.points())
    seconds = time.perf_counter() - t
    row = {"model": "model_0", "samples": len(every), "points": len(model.points()), "seconds": seconds}
    return [row], [_figure("extract", "extraction samples per second (model_0, 31 points)", len(every) / seconds,
                           "samples/s", "higher")]


def _bench_study(suite: str, data: dict) -> tuple[list[dict], list[dict]]:
    """A fixed study in a fresh temporary store on a local Ray: its stage timings."""
    import tempfile

    from workflows.config import validate
    from workflows.study import run_study

    with tempfile.TemporaryDirectory(prefix=f"layergw-bench-{suite}-") as tmp:
        cfg = validate({**data, "store": tmp})
        t = time.perf_counter()
        result = run_study(cfg, show_progress=False)
        wall = time.perf_counter() - t
        status = _read_status(result.run_uri)
    pairs = status["pairs_total"]
    row = {"suite": suite, "wall_s": wall, "pairs": pairs, **{f"{k}_s": v for k, v in status["timings"].items()}}
    if suite == "compare":
        return [row], [_figure("compare", "compare stage pairs per second (model_0, n=128, cka + gw)",
                               pairs / status["timings"]["compare"], "pairs/s", "higher")]
    return [row], [_figure("demo", "demo wall time", wall, "s", "lower")]


def _read_status(run_uri: str) -> dict:
    from layergw import layout
    from layergw.store import ResultStore

    return ResultStore(run_uri).read_json(layout.RUN)


def run_bench(suite: str = "gw", out: str = "bench-results", sizes: tuple[int, ...] | None = None,
              markdown: str | None = None, store: str | None = None, repeats: int = 3) -> str:
    """Run one suite and write ``<out>/<suite>-<UTC stamp>.parquet``; returns its path. With
    ``store``, the suites with history figures run ``repeats`` times and append each figure's
    median and range to the store's history (the detail rows of every repeat are kept, with
    their ``repeat``)."""
    from layergw import measures

    if suite not in SUITES:
        raise ValueError(f"unknown benchmark suite {suite!r}; valid suites: {', '.join(SUITES)}")
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    figures: list[dict] = []
    if suite == "measures":
        rows = bench_measures(measure_cases(measures.names()), sizes or (256, 1000))
    elif suite == "all":
        rows = []
        for s in HISTORY_SUITES:
            detail, figs = _repeated(s, sizes if s == "gw" else None, repeats if store else 1)
            rows += [{"suite": s, **r} for r in detail]
            figures += figs
    else:
        rows, figures = _repeated(suite, sizes, repeats if store else 1)
    for r in rows:
        r.update(timestamp=stamp, machine=platform.node(), processor=platform.machine())
    path = Path(out) / f"{suite}-{stamp}.parquet"
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(_uniform(rows)), path)
    if suite == "gw":
        gw_plot(rows, str(path.with_suffix(".png")))
    if markdown:
        Path(markdown).parent.mkdir(parents=True, exist_ok=True)
        rows = [r for r in rows if r.get("repeat", 0) == 0]  # one table of the suite, not one per repeat
        if suite in ("gw", "gw-model"):
            text = (f"Measured {stamp} on {platform.machine()}, one BLAS thread, median of {rows[0]['repeats']} "
                    "runs per pair; compare ratios, not absolute times.\n\n" + gw_markdown(rows))
        elif suite == "measures":
            text = (f"Measured {stamp} on {platform.machine()}, one BLAS thread, d={rows[0]['d']}, "
                    f"median of {rows[0]['repeats']} runs; compare ratios, not absolute times.\n\n"
                    + markdown_table(rows))
        else:
            text = f"Measured {stamp} on {platform.machine()}.\n\n" + rows_markdown(rows)
        write_markdown(markdown, suite, text)
    if store and figures:
        from workflows.bench_history import append

        append(store, figures, stamp, suite)
    return str(path)


def write_markdown(path: str | Path, suite: str, text: str) -> None:
    """Write a suite's table into ``path``: between its ``<!-- bench:SUITE -->`` and
    ``<!-- /bench:SUITE -->`` markers where the page has them (docs/performance.md holds
    each suite's current table so), else as the whole file."""
    path = Path(path)
    start, end = f"<!-- bench:{suite} -->", f"<!-- /bench:{suite} -->"
    page = path.read_text() if path.exists() else ""
    if start in page and end in page and page.index(start) < page.index(end):
        head, rest = page.split(start, 1)
        page = f"{head}{start}\n{text.strip()}\n{end}{rest.split(end, 1)[1]}"
    elif "<!-- bench:" in page:
        raise ValueError(f"markdown page {path} holds other suites' tables but no {start} ... {end} block for "
                         f"{suite!r}: add one where its table goes, or write to another file")
    else:
        page = text
    path.write_text(page)


def _repeated(suite: str, sizes: tuple[int, ...] | None, repeats: int) -> tuple[list[dict], list[dict]]:
    """A suite run ``repeats`` times (once where it has no history figures): every repeat's
    rows, and each figure's median and range over the repeats."""
    from workflows.bench_history import combine

    if repeats < 1:
        raise ValueError(f"repeats must be at least 1, got {repeats}")
    rows, figures = suite_figures(suite, sizes)
    if not figures or repeats == 1:
        return rows, combine([figures]) if figures else []
    rows, runs = [{**r, "repeat": 0} for r in rows], [figures]
    for i in range(1, repeats):
        more, figs = suite_figures(suite, sizes)
        rows += [{**r, "repeat": i} for r in more]
        runs.append(figs)
    return rows, combine(runs)


def _uniform(rows: list[dict]) -> list[dict]:
    """Rows of one table: every key in every row (null where a suite has no such column)."""
    keys = list(dict.fromkeys(k for r in rows for k in r))
    return [{k: r.get(k) for k in keys} for r in rows]
