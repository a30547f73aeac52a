"""The compiled part of layergw, for the exact GW solver (layergw/measures/_gw_cg.py): its
assignment solvers (_lap.c) and the elementwise end of its steps (_cg_step.c). Optional:
without a C compiler the install goes on and GW runs POT's network simplex at every later
step and NumPy for the rest (same values, slower; a warning says so). Everything else is
configured in pyproject.toml."""
from setuptools import Extension, setup

# -ffp-contract=off: no fused multiply-adds, so _cg_step's results are bit for bit NumPy's
FLAGS = ["-O3", "-ffp-contract=off"]
HEADERS = ["layergw/measures/_buffers.h"]
setup(ext_modules=[Extension("layergw.measures._lap", ["layergw/measures/_lap.c"], depends=HEADERS,
                             extra_compile_args=FLAGS, optional=True),
                   Extension("layergw.measures._cg_step", ["layergw/measures/_cg_step.c"], depends=HEADERS,
                             extra_compile_args=FLAGS, optional=True)])
