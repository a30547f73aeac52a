"""HTML building blocks of the report: escaping, number formats, tables, the page's style."""
from __future__ import annotations

import html
import math
import re
from typing import Any

import numpy as np


CSS = """
body { font-family: system-ui, -apple-system, Segoe UI, Helvetica, Arial, sans-serif;
       margin: 2em auto; max-width: 1400px; padding: 0 1em; color: #222; }
h1 { font-size: 1.6em; } h2 { border-bottom: 1px solid #ccc; padding-bottom: .2em; margin-top: 2em; }
h3 { margin-top: 1.4em; }
table { border-collapse: collapse; margin: .6em 0; font-size: .9em; }
th, td { border: 1px solid #ccc; padding: .25em .6em; text-align: left; vertical-align: top; }
th { background: #f2f2f2; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
.figs { display: flex; flex-wrap: wrap; gap: 1em; }
figure { margin: 0; max-width: 640px; } figure img { width: 100%; height: auto; border: 1px solid #eee; }
figcaption { font-size: .85em; color: #555; }
pre { background: #f7f7f7; padding: .8em; overflow-x: auto; font-size: .85em; }
.warn { color: #a33; } .muted { color: #777; }
"""


def esc(x: Any) -> str:
    return html.escape("" if x is None else str(x), quote=True)


def slug(s: str) -> str:
    """A file-name-safe form of a model or measure name ("google/gemma-2b" -> "google_gemma-2b")."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", str(s)).strip("_") or "x"


def fmt(v: Any) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return ""
    if isinstance(v, (float, np.floating)):
        return f"{float(v):.6g}"
    return str(v)


def null(v: Any) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


def html_table(header: list[str], rows: list[list[Any]], num: set[int] = frozenset()) -> str:
    out = ["<table><thead><tr>", *(f"<th>{esc(h)}</th>" for h in header), "</tr></thead><tbody>"]
    for r in rows:
        out.append("<tr>")
        for i, v in enumerate(r):
            cls = ' class="num"' if i in num and isinstance(v, (int, float, np.number)) else ""
            out.append(f"<td{cls}>{esc(fmt(v))}</td>")
        out.append("</tr>")
    out.append("</tbody></table>")
    return "".join(out)


def opt_table(store: Any, path: str) -> Any:
    return store.read_table(path).to_pandas() if store.exists(path) else None


def opt_json(store: Any, path: str) -> Any:
    return store.read_json(path) if store.exists(path) else None


def seconds(v: Any) -> Any:
    try:
        return round(float(v), 3)
    except (TypeError, ValueError):
        return v


def yes_no(v: Any) -> Any:
    return ("yes" if v else "no") if isinstance(v, bool) else v
