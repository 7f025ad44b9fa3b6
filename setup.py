"""Only for the optional C extension; everything else is in pyproject.toml.

`optional=True`: where no compiler is at hand the install still succeeds and
lapps.ws.frames uses its pure-Python masking.
"""

from setuptools import Extension, setup

setup(ext_modules=[Extension("lapps.ws._speedups", ["lapps/ws/_speedups.c"], optional=True)])
