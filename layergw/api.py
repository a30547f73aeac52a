"""The Python API for notebooks and scripts: run a study, open a finished run, read its results
as pandas DataFrames.

``import layergw`` stays free of Ray: :func:`run` hands the study to the runner installed under
the ``layergw.runners`` entry point group (``workflows`` provides ``ray``), and :func:`open_run`
reads a run folder through :class:`~layergw.store.ResultStore` alone.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Any

from layergw import layout

RUNNERS = "layergw.runners"


def _runner(name: str = "ray") -> Any:
    from importlib.metadata import entry_points

    found = {ep.name: ep for ep in entry_points(group=RUNNERS)}
    if name not in found:
        raise RuntimeError(f"no study runner {name!r} is installed under the {RUNNERS!r} entry points (found "
                           f"{sorted(found) or 'none'}); install layergw with `pip install -e .` from its checkout")
    return found[name].load()


def run(config: Any, store: str | None = None, **overrides: Any) -> Run:
    """Run (or resume) a study and open it.

    ``config``: a YAML path, a dict of the config's fields or a ``StudyConfig``. ``store``: the
    root URI to write under (default: the config's ``store``). ``overrides``: dotted config keys
    and values, as the command line's ``key=value`` (``**{"inputs.n": 64}``). Ray is started
    locally unless the config's ``ray.address`` names a cluster."""
    return open_run(_runner()(config, store=store, overrides=overrides))


def open_run(uri: str) -> Run:
    """A finished (or running) run folder, ``<store>/<study>/<run id>``; a study folder with
    exactly one run opens that run."""
    from layergw.store import ResultStore

    if not isinstance(uri, str) or not uri:
        raise ValueError(f"uri must be a run folder's path or URI, got {uri!r}")
    store = ResultStore(uri)
    if store.exists(layout.CONFIG):
        return Run(store)
    runs = sorted({p.split("/")[0] for p in store.list_files("", layout.CONFIG) if p.count("/") == 1})
    if len(runs) == 1:
        return Run(store.child(runs[0]))
    raise ValueError(f"uri {uri!r} is not a run folder (no {layout.CONFIG})"
                     + (f"; it is a study folder with runs {runs}: open one of them" if runs else ""))


def _frame(store: Any, path: str) -> Any:
    import pandas as pd

    return store.read_table(path).to_pandas() if store.exists(path) else pd.DataFrame()


@dataclass(frozen=True)
class Run:
    """One run folder and its results (``docs/results.md`` lists every file and column)."""

    store: Any

    @property
    def uri(self) -> str:
        return self.store.uri

    @cached_property
    def config(self) -> dict:
        """The resolved config the run was made with (``config.json``'s ``config``)."""
        return self.store.read_json(layout.CONFIG)["config"]

    @property
    def status(self) -> dict:
        """``run.json``: stage, status (``complete``, ``failed``), timings, failures; read afresh."""
        return self.store.read_json(layout.RUN) if self.store.exists(layout.RUN) else {"status": "running"}

    @property
    def report_path(self) -> str:
        """The report page's URL (``file://`` for a local run)."""
        return self.store.url(layout.REPORT_PAGE)

    def points(self, model: str | None = None) -> Any:
        """Every model's representation points: name, display name, index, depth."""
        df = _frame(self.store, layout.POINTS)
        return df if model is None else df[df["model"] == self._model(model, df)].reset_index(drop=True)

    @cached_property
    def models(self) -> list[str]:
        return list(dict.fromkeys(self.points()["model"]))

    def _model(self, model: str, points: Any = None) -> str:
        known = self.models if points is None else list(dict.fromkeys(points["model"]))
        if model not in known:
            raise ValueError(f"model must be one of {known}, got {model!r}")
        return model

    def measure_keys(self, model: str) -> list[str]:
        """The measure variants with stored pairs for ``model``: folder names ``<name>-<params hash>``."""
        prefix = f"{layout.PAIRS_DIR}/{self._model(model)}/"
        return sorted({p[len(prefix):].split("/")[0] for p in self.store.list_files(prefix, ".parquet")})

    def variants(self, model: str) -> Any:
        """One row per measure variant of ``model``: its ``key``, ``measure`` name and ``params`` JSON."""
        import pandas as pd

        rows = []
        for key in self.measure_keys(model):
            first = self.store.list_files(layout.pairs_dir(model, key) + "/", ".parquet")[0]
            t = self.store.read_table(first).select(["measure", "params"]).slice(0, 1).to_pylist()[0]
            rows.append({"key": key, **t})
        return pd.DataFrame(rows, columns=["key", "measure", "params"])

    def _keys(self, model: str, measure: str | None) -> list[str]:
        keys = self.measure_keys(model)
        if measure is None:
            return keys
        chosen = [k for k in keys if k == measure or k.rsplit("-", 1)[0] == measure]
        if not chosen:
            raise ValueError(f"measure must name one of {model!r}'s measures {keys} (a name or a key), got {measure!r}")
        return chosen

    def key(self, model: str, measure: str) -> str:
        """The one stored variant ``measure`` (a name or a key) names for ``model``; a name with
        several variants is a ValueError listing their keys."""
        keys = self._keys(model, measure)
        if len(keys) > 1:
            raise ValueError(f"measure {measure!r} has {len(keys)} variants for {model!r}: name one of {keys}")
        return keys[0]

    def pairs(self, model: str | None = None, measure: str | None = None) -> Any:
        """Pair rows (``results.PAIRS``) of one model or all, one measure (name or key) or all."""
        import pandas as pd

        from layergw.results import PAIRS

        parts = []
        for m in [model] if model is not None else self.models:
            for key in self._keys(m, measure):
                t = self.store.read_tables(layout.pairs_dir(m, key), PAIRS)
                if t is not None:
                    parts.append(t.to_pandas())
        return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=PAIRS.names)

    def matrix(self, model: str, measure: str) -> Any:
        """The L×L matrix of one model under one measure variant, indexed by layer name both ways:
        both triangles from the pair rows, the diagonal 0 (distances) or 1 (similarities), NaN
        where a pair failed."""
        import pandas as pd

        from layergw.grouping import pair_matrix

        rows = self.pairs(model, self.key(model, measure))
        names = self.points(model).sort_values("layer_index")["layer"].tolist()
        M = pair_matrix(rows, model, str(rows["measure"].iloc[0]), len(names))
        return pd.DataFrame(M, index=pd.Index(names, name="layer_a"), columns=pd.Index(names, name="layer_b"))

    def groups(self) -> Any:
        """``groups.parquet``: each model's groups per measure variant and method, boundaries marked."""
        return _frame(self.store, layout.GROUPS)

    def targets(self) -> Any:
        """``targets.parquet``: each point against each known target."""
        return _frame(self.store, layout.TARGETS)

    def ablations(self) -> Any:
        """``ablations.parquet``: every pruning and freezing cell's metrics."""
        return _frame(self.store, layout.ABLATIONS)

    def ablation_summary(self) -> Any:
        """Held-out accuracy per ablation cell over seeds (mean, std, count)."""
        return _frame(self.store, layout.ABLATION_TABLES["summary"])

    def knees(self) -> Any:
        """Per model: the pruning and freezing knees and whether N = L matches the checkpoint."""
        return _frame(self.store, layout.ABLATION_TABLES["knees"])

    def prune_plan(self) -> Any:
        """Per model and grouping: its cuts, proposed prune and freeze, and the grid at the prune."""
        return _frame(self.store, layout.ABLATION_TABLES["prune_plan"])

    def measure_ranking(self) -> Any:
        """Groupings ranked by how near their proposals fall to the ablation knees."""
        return _frame(self.store, layout.ABLATION_TABLES["measure_ranking"])

    def dynamics(self) -> Any:
        """Mean pairwise value per checkpoint of each training series."""
        return _frame(self.store, layout.DYNAMICS)

    def diagnostics(self, model: str) -> dict[str, Any]:
        """The paper's diagnostic tables of one model, by name (``layout.DIAGNOSTIC_TABLES``);
        tables the run did not make are left out."""
        self._model(model)
        return {t: _frame(self.store, layout.diagnostics(model, t)) for t in layout.DIAGNOSTIC_TABLES
                if self.store.exists(layout.diagnostics(model, t))}

    def skip(self, model: str) -> dict:
        """The skip check of one model: the KL matrix (``kl``) and each measure's agreement."""
        self._model(model)
        out = self.store.read_json(layout.skip_agreement(model)) if self.store.exists(layout.skip_agreement(model)) else {}
        if self.store.exists(layout.skip_kl(model)):
            out["kl"] = self.store.read_array(layout.skip_kl(model))
        return out

    def __repr__(self) -> str:
        return f"Run({self.uri!r}, status={self.status.get('status')!r})"


__all__ = ["Run", "open_run", "run"]
