"""Build the optional compiled kernel; everything else is configured in pyproject.toml.

``optional=True``: without a C compiler the install still succeeds and trueshape.correct falls back to
numpy and scipy (same results, slower; ``benchmarks/gnl_correct.py`` measures both).
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "trueshape._warp",
            sources=["src/trueshape/_warp.c"],
            extra_compile_args=["-O3", "-fno-math-errno"],
            optional=True,
        )
    ]
)
