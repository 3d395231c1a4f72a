"""Only the optional C extension; everything else is declared in pyproject.toml.

(setuptools' `[tool.setuptools.ext-modules]` table is experimental and warns on every build.)
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        # CPU kernels for float32 inference: optional, so an install without a C compiler or OpenMP
        # (e.g. Apple clang) still succeeds and the numpy paths are used instead.
        Extension(
            name,
            [f"models/cpu/{name.rsplit('.', 1)[-1]}.c"],
            depends=["models/cpu/_ext.h"],
            extra_compile_args=["-O3", "-fopenmp"],
            extra_link_args=["-fopenmp"],
            optional=True,
        )
        for name in ("models.cpu._kernels", "models.cpu._conv")  # _conv: the vocoders' direct convolution
    ]
)
