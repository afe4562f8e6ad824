"""Build the optional compiled kernel; everything else is configured in pyproject.toml.

``optional=True``: without a C compiler the install still succeeds and trueshape.correction falls back to
numpy and scipy (same results, slower; ``benchmarks/gnl_correct.py`` measures both). Any kernel an earlier
build left is removed first, so a failed rebuild leaves no kernel rather than a stale one.
"""

from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext


class BuildWithoutStaleKernel(build_ext):
    """Remove the extension's earlier builds (any ABI tag) where they are imported from, then build.

    That is the build folder and the source package (where an editable install copies the built module).
    """

    def build_extension(self, ext: Extension) -> None:
        package, _, stem = ext.name.rpartition(".")
        source_package = Path(self.get_finalized_command("build_py").get_package_dir(package))
        for folder in {Path(self.get_ext_fullpath(ext.name)).parent, source_package}:
            for stale in folder.glob(f"{stem}.*"):
                if stale.suffix in (".so", ".pyd", ".dylib"):
                    stale.unlink()
        super().build_extension(ext)


setup(
    cmdclass={"build_ext": BuildWithoutStaleKernel},
    ext_modules=[
        Extension(
            "trueshape._warp",
            sources=["src/trueshape/_warp.c"],
            extra_compile_args=["-O3", "-fno-math-errno"],
            optional=True,
        )
    ],
)
