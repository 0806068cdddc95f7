"""mlx-entropix: entropy-aware sampling on MLX.

Importing the package preloads an optimized BLAS (Linux) before anything imports ``mlx.core``.
"""

from .runtime import blas as _blas

_blas.preload()

__version__ = "0.1.0"
