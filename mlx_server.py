"""mlx-entropix server: the UI, an SSE API with per-token metrics, and an OpenAI-compatible API.

uv run mlx_server.py                     # http://127.0.0.1:8000 (the embedded model)
uv run mlx_server.py --help              # (also installed as the `mlx-entropix-server` command)
"""

import sys

try:
    from mlx_entropix.server.main import main
except KeyboardInterrupt:  # Ctrl-C while its modules load (seconds): a line, not a traceback
    print("\ninterrupted", file=sys.stderr)
    sys.exit(130)

if __name__ == "__main__":
    sys.exit(main())
