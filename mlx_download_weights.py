"""Download a Hugging Face Llama checkpoint, optionally converting it to MLX.

uv run mlx_download_weights.py --model-id meta-llama/Llama-3.2-1B-Instruct --out-dir weights/1B
uv run mlx_download_weights.py --model-id ORG/NAME --convert --quantize   # 4-bit MLX copy
"""

import sys

from mlx_entropix.io.download import main

if __name__ == "__main__":
    sys.exit(main())
