"""Entropix from the terminal: stream a prompt's tokens coloured by the model's uncertainty.

uv run mlx_main.py --input "Which number is larger, 9.9 or 9.11?"
uv run mlx_main.py --compare --seed 1        # entropix vs normal, same prompt and seed
uv run mlx_main.py --help                    # (also installed as the `mlx-entropix` command)
"""

import sys

try:
    from mlx_entropix.cli.main import main
except KeyboardInterrupt:  # Ctrl-C while its modules load (seconds): a line, not a traceback
    print("\ninterrupted", file=sys.stderr)
    sys.exit(130)

if __name__ == "__main__":
    sys.exit(main())
