"""Measure variants and layer names as the report reads them from stored rows.

A measure variant is (name, params JSON); rows written before tables had ``params`` are
taken as the only variant of their measure.
"""
from __future__ import annotations

import hashlib
import json
from typing import Any

import numpy as np

from layergw.report.html import null, slug


def ordered(values: list[str], first: tuple[str, ...] = ("gw",)) -> list[str]:
    uniq = list(dict.fromkeys(v for v in values if not null(v)))
    return [v for v in first if v in uniq] + sorted(v for v in uniq if v not in first)


def pkey(v: Any) -> str:
    """A ``params`` cell as a string key; "" for null (a table written before it had params)."""
    return "" if null(v) else str(v)


def pvalue(v: Any) -> str:
    return v if isinstance(v, str) else json.dumps(v, sort_keys=True)


class MeasureVariants:
    """The run's measure variants, (name, params JSON): their labels, file names and order.

    A name with a single variant is labelled by the name alone; otherwise by the name plus
    the parameters that differ between its variants, e.g. ``gw (normalize=max)``. Rows of
    groups/targets tables with no params ("") are taken as the only variant of their name.
    """

    def __init__(self, variants: list[tuple[str, str]]):
        self.by_name: dict[str, list[str]] = {}
        for name, p in variants:
            if null(name):
                continue
            known = self.by_name.setdefault(str(name), [])
            if p not in known:
                known.append(p)
        for known in self.by_name.values():
            known.sort()

    def resolve(self, name: str, p: str) -> str:
        """``p``, or for a row without params the name's only variant (else "")."""
        known = self.by_name.get(name, [])
        return known[0] if not p and len(known) == 1 else p

    def ordered(self, variants: list[tuple[str, str]]) -> list[tuple[str, str]]:
        present = set(variants)
        names = ordered([n for n, _ in variants])
        return [(n, p) for n in names for p in sorted({p for m, p in present if m == n})]

    def unique(self, name: str) -> bool:
        return len(self.by_name.get(name, [])) <= 1

    def label(self, name: str, p: str) -> str:
        if self.unique(name):
            return name
        if not p:
            return f"{name} (params not recorded)"
        parsed = {q: self._parse(q) for q in self.by_name[name] if q}
        mine = parsed.get(p, self._parse(p))
        if mine is None:
            return f"{name} (params {self._hash(p)})"
        keys = set().union(*(d.keys() for d in parsed.values() if d is not None))
        differ = sorted(
            k for k in keys
            if len({json.dumps(d.get(k, None), sort_keys=True) if d is not None else None
                    for d in parsed.values()}) > 1
        )
        shown = [f"{k}={pvalue(mine[k])}" for k in differ if k in mine]
        return f"{name} ({', '.join(shown)})" if shown else f"{name} (params {self._hash(p)})"

    def file_part(self, name: str, p: str) -> str:
        """``name``, plus a short hash of the params where the name has several variants."""
        return slug(name) if self.unique(name) else f"{slug(name)}-{self._hash(p)}"

    @staticmethod
    def _parse(p: str) -> dict | None:
        try:
            d = json.loads(p)
        except ValueError:
            return None
        return d if isinstance(d, dict) else None

    @staticmethod
    def _hash(p: str) -> str:
        return hashlib.sha256(p.encode("utf-8")).hexdigest()[:8]


def with_pkey(df: Any, variants: "MeasureVariants | None" = None) -> Any:
    """``df`` with a ``_p`` column: its params as a key, resolved to the only variant if null."""
    if df is None:
        return None
    raw = df["params"] if "params" in df.columns else [None] * len(df)
    keys = [pkey(v) for v in raw]
    if variants is not None:
        keys = [variants.resolve(str(m), k) for m, k in zip(df["measure"], keys)]
    return df.assign(_p=keys)


def layer_names(points: Any, pairs: Any, model: str) -> tuple[list[str], list[str]]:
    """(layer names, display names) of one model in layer_index order."""
    pts = points[points["model"] == model].sort_values("layer_index") if points is not None else None
    if pts is not None and len(pts):
        n = int(pts["layer_index"].max()) + 1
        layers = [f"#{i}" for i in range(n)]
        displays = list(layers)
        for r in pts.itertuples(index=False):
            layers[int(r.layer_index)] = str(r.layer)
            displays[int(r.layer_index)] = str(r.display) if not null(r.display) else str(r.layer)
        return layers, displays
    # no points for this model: fall back to the names carried by the pair rows
    if pairs is None:
        return [], []
    rows = pairs[(pairs["model_a"] == model) & (pairs["model_b"] == model)]
    names: dict[int, str] = {}
    for side in ("a", "b"):
        for i, name in zip(rows[f"layer_{side}_index"], rows[f"layer_{side}"]):
            names.setdefault(int(i), str(name))
    n = max(names) + 1 if names else 0
    layers = [names.get(i, f"#{i}") for i in range(n)]
    return layers, list(layers)


def seed_variants(rows: Any) -> list[tuple[Any, ...]]:
    """The (seed, checkpoint) combinations of within-model pair rows."""
    cols = ["seed_a", "checkpoint_a", "seed_b", "checkpoint_b"]
    seen = dict.fromkeys(
        tuple(None if null(v) else v for v in t) for t in rows[cols].itertuples(index=False)
    )
    return list(seen)


def variant_rows(rows: Any, v: tuple[Any, ...]) -> Any:
    mask = np.ones(len(rows), dtype=bool)
    for col, val in zip(["seed_a", "checkpoint_a", "seed_b", "checkpoint_b"], v):
        mask &= rows[col].isna().to_numpy() if val is None else (rows[col] == val).to_numpy()
    return rows[mask]


def variant_label(v: tuple[Any, ...]) -> str:
    sa, ca, sb, cb = v
    a = f"seed {sa}, checkpoint {ca}"
    return a if (sa, ca) == (sb, cb) else f"{a} vs seed {sb}, checkpoint {cb}"
