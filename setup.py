"""The compiled part of layergw: the warm-started assignment solver of the exact GW solver
(layergw/measures/_lap.c). Optional: without a C compiler the install goes on and GW runs
POT's network simplex at every step (same values, slower; a warning says so). Everything
else is configured in pyproject.toml."""
from setuptools import Extension, setup

setup(ext_modules=[Extension("layergw.measures._lap", ["layergw/measures/_lap.c"],
                             extra_compile_args=["-O3"], optional=True)])
