"""layergw: find groups of functionally similar layers with Gromov-Wasserstein distances.

``import layergw`` imports neither Ray nor torch. ``layergw.run(config)`` runs a study,
``layergw.open_run(uri)`` reads a finished one (:mod:`layergw.api`), and
``layergw.plot.heatmap(run, model, measure)`` draws one of its matrices.
"""
from layergw.api import Run, open_run, run

__version__ = "0.1.0"
__all__ = ["Run", "open_run", "run"]
