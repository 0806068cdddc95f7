"""mlx-entropix server: the UI, an SSE API with per-token metrics, and an OpenAI-compatible API.

uv run mlx_server.py                     # http://127.0.0.1:8000 (the embedded model)
uv run mlx_server.py --help              # (also installed as the `mlx-entropix-server` command)
"""

import sys

from mlx_entropix.server.main import main

if __name__ == "__main__":
    sys.exit(main())
