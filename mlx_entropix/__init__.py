"""mlx-entropix: entropy-aware sampling on MLX.

Importing the package preloads an optimized BLAS (Linux) before anything imports ``mlx.core``.
"""

from .runtime import blas as _blas
from .runtime import kernels as _kernels

_blas.preload()
_kernels.use_cache_dir()  # MLX's compiled CPU kernels in a per-user cache (before any compile)

__version__ = "0.1.0"
