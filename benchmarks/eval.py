"""Accuracy of greedy / normal / entropix on a CSV of questions with known answers.

    uv run benchmarks/eval.py data/eval/core.csv --seeds 2 --max-tokens 24 --png images/eval.png
    uv run benchmarks/eval.py my_gsm8k.csv --model meta-llama/Llama-3.2-1B-Instruct \\
        --fewshot my_gsm8k_train.csv --shots 8 --max-tokens 256

All logic lives in ``mlx_entropix/eval/`` (see its docstring and benchmarks/README.md).
Exit status: 0 done, 2 bad input (one ``eval: error: ...`` line), 1 an error mid-run (named in
one line and in the result's ``run.error``) or a stdout that cannot be written, 130 interrupted;
stopped mid-run by Ctrl-C or an error, the files hold the items finished (``run.interrupted``).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import mlx_entropix  # noqa: E402, F401  (BLAS preload before mlx)
from mlx_entropix.eval.main import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
