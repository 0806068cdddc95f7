"""Download a Hugging Face Llama checkpoint (only the files we load), optionally convert to MLX.

Used by ``mlx_download_weights.py``. Hub failures (unknown repo, gated repo, missing login, no
network) become one ``DownloadError`` line; ``HF_ENDPOINT`` points the whole thing at a mirror
(the tests use a loopback fake hub).
"""

from __future__ import annotations

import argparse
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path

from ..errors import EntropixError, first_line, lenient_stdout, output_failed

# What load.py reads from a checkpoint directory: config, weights, tokenizer, chat template.
# Llama repos also carry the original Meta checkpoint under original/ (a second copy of the
# weights as .pth): skip it.
DEFAULT_PATTERNS = ("*.json", "*.safetensors", "tokenizer.model", "*.jinja", "*.txt")
IGNORE_PATTERNS = ("original/*", "*.pth", "*.bin", "*.gguf", "*.msgpack", "*.h5", "*.onnx")
LOGIN_HINT = "log in with `hf auth login` or set HF_TOKEN"


class DownloadError(EntropixError):
    """The download or conversion could not be done; the message says why and what to do."""


def _explain(err: Exception, repo_id: str, endpoint: str, token: str | None) -> DownloadError:
    """Turn a huggingface_hub / network exception into one actionable line."""
    from huggingface_hub.errors import (
        GatedRepoError,
        HfHubHTTPError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    page = f"{endpoint.rstrip('/')}/{repo_id}"
    if isinstance(err, GatedRepoError):
        if token is None:
            return DownloadError(
                f"{repo_id} is a gated repo and you are not logged in: accept its licence at "
                f"{page}, then {LOGIN_HINT}"
            )
        return DownloadError(
            f"{repo_id} is a gated repo and this token has no access yet: accept its licence at "
            f"{page} (and wait for approval), or use a token of an approved account"
        )
    if isinstance(err, RevisionNotFoundError):
        return DownloadError(f"revision not found in {repo_id}: {first_line(err)}")
    if isinstance(err, RepositoryNotFoundError):
        hint = f"; if it is private or gated, {LOGIN_HINT}" if token is None else ""
        return DownloadError(f"repository not found: {repo_id} (check the id{hint})")
    if isinstance(err, HfHubHTTPError):
        status = err.response.status_code if err.response is not None else "?"
        if status in (401, 403):
            return DownloadError(f"access denied to {repo_id} (HTTP {status}): {LOGIN_HINT}")
        return DownloadError(f"the hub refused the download of {repo_id} (HTTP {status})")
    if isinstance(err, (LocalEntryNotFoundError, OSError)):
        return DownloadError(f"cannot download {repo_id} from {endpoint}: {first_line(err)}")
    # Anything else is most likely the network (the HTTP client differs across hub versions).
    return DownloadError(
        f"cannot download {repo_id} from {endpoint}: {type(err).__name__}: {first_line(err)}"
    )


def plan(
    repo_id: str,
    revision: str | None,
    include: Sequence[str] | None,
    token: str | None,
    endpoint: str,
) -> list[tuple[str, int]]:
    """The (path, size) of each file a download would fetch, from the repo's file listing."""
    from huggingface_hub import HfApi
    from huggingface_hub.hf_api import RepoFile
    from huggingface_hub.utils import filter_repo_objects

    api = HfApi(endpoint=endpoint, token=token)
    try:
        # model_info first: it fails fast (no retries) when the hub is unreachable or the repo
        # unknown, and pins the commit so the listing and the download agree.
        sha = api.model_info(repo_id, revision=revision).sha
        tree = api.list_repo_tree(repo_id, recursive=True, revision=sha or revision)
        sizes = {f.path: f.size for f in tree if isinstance(f, RepoFile)}
    except Exception as err:
        raise _explain(err, repo_id, endpoint, token) from err
    # An explicit --include wins over the default exclusions (e.g. to fetch one .gguf).
    patterns = list(include) if include else list(DEFAULT_PATTERNS)
    ignore = None if include else list(IGNORE_PATTERNS)
    chosen = list(filter_repo_objects(sizes, allow_patterns=patterns, ignore_patterns=ignore))
    if not any(p.endswith((".safetensors", ".gguf")) for p in chosen):
        ggufs = [p for p in sizes if p.endswith(".gguf")]
        hint = f" (GGUF repo: pass --include {ggufs[0]})" if ggufs else ""
        raise DownloadError(
            f"no weights matching {', '.join(patterns)} in {repo_id}: "
            f"{len(sizes)} files, none usable{hint}"
        )
    return [(p, sizes[p]) for p in chosen]


def download(
    repo_id: str,
    out_dir: str | Path,
    revision: str | None = None,
    include: Sequence[str] | None = None,
    token: str | None = None,
    progress: bool = True,
) -> Path:
    """Fetch the needed files of ``repo_id`` into ``out_dir``; returns ``out_dir``."""
    from huggingface_hub import constants, get_token, snapshot_download

    if repo_id.count("/") != 1 or repo_id.startswith("/") or repo_id.endswith("/"):
        raise DownloadError(f"not a Hugging Face repo id: {repo_id!r} (expected 'org/name')")
    token = token or get_token()
    endpoint = constants.ENDPOINT  # HF_ENDPOINT, if set
    files = plan(repo_id, revision, include, token, endpoint)
    total = sum(size for _, size in files)
    print(
        f"Downloading {len(files)} files ({total / 1e6:.1f} MB) from {repo_id}"
        f"{'@' + revision if revision else ''} to {out_dir}"
    )
    if not progress:
        from huggingface_hub.utils import disable_progress_bars

        disable_progress_bars()
    try:
        path = snapshot_download(
            repo_id,
            revision=revision,
            local_dir=str(out_dir),
            allow_patterns=[p for p, _ in files],  # exactly the planned files
            token=token,
            endpoint=endpoint,
        )
    except Exception as err:
        raise _explain(err, repo_id, endpoint, token) from err
    return Path(path)


def convert(
    src: str | Path,
    dst: str | Path,
    quantize: bool = False,
    q_bits: int = 4,
    q_group_size: int = 64,
    dtype: str | None = None,
    overwrite: bool = False,
) -> Path:
    """Convert a downloaded HF checkpoint to the MLX layout with mlx-lm (optionally quantized)."""
    from mlx_lm.convert import convert as mlx_lm_convert

    dst = Path(dst)
    if dst.exists():
        if not overwrite:
            raise DownloadError(f"{dst} already exists (pass --overwrite to replace it)")
        shutil.rmtree(dst)
    try:
        mlx_lm_convert(
            str(src),
            str(dst),
            quantize=quantize,
            q_bits=q_bits if quantize else None,
            q_group_size=q_group_size if quantize else None,
            dtype=dtype,
        )
    except Exception as err:  # mlx-lm raises ValueError/KeyError/OSError with long messages
        raise DownloadError(f"cannot convert {src} to MLX: {first_line(err)}") from err
    return dst


def check_targets(out_dir: Path, mlx_dir: Path | None, overwrite: bool) -> None:
    """The directories can take the result: checked before the download, not after it (which
    may take an hour). ``mlx_dir``: the conversion's (None: no conversion)."""
    if out_dir.exists() and not out_dir.is_dir():
        raise DownloadError(f"{out_dir} is a file, not a directory (choose another --out-dir)")
    if mlx_dir is None:
        return
    if out_dir.resolve().is_relative_to(mlx_dir.resolve()):  # replacing it deletes the source
        raise DownloadError(
            f"--mlx-dir {mlx_dir} would hold the download ({out_dir}): choose another directory"
        )
    if mlx_dir.exists() and not overwrite:
        raise DownloadError(f"{mlx_dir} already exists (pass --overwrite to replace it)")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="mlx_download_weights.py",
        description="Download a Hugging Face Llama checkpoint (config, safetensors, tokenizer "
        "only) and optionally convert it to MLX. Honours HF_ENDPOINT, HF_TOKEN and HF_HOME.",
    )
    p.add_argument(
        "--model-id",
        "--checkpoint",
        dest="model_id",
        default="meta-llama/Llama-3.2-1B-Instruct",
        help="Hugging Face repo id (default: %(default)s; gated: needs a login)",
    )
    p.add_argument("--out-dir", help="where to put the files (default: weights/<repo name>)")
    p.add_argument("--revision", help="branch, tag or commit (default: main)")
    p.add_argument(
        "--include",
        action="append",
        metavar="PATTERN",
        help="only files matching this glob (repeatable; replaces the default selection, "
        "e.g. --include '*Q8_0.gguf' for a GGUF repo)",
    )
    p.add_argument("--token", help="Hugging Face token (default: HF_TOKEN or the saved login)")
    p.add_argument("--convert", action="store_true", help="convert to MLX with mlx-lm afterwards")
    p.add_argument("--mlx-dir", help="converted model directory (default: <out-dir>-mlx)")
    p.add_argument("--quantize", action="store_true", help="quantize while converting")
    p.add_argument("--q-bits", type=int, default=4, choices=(2, 3, 4, 6, 8))
    p.add_argument("--q-group-size", type=int, default=64, choices=(32, 64, 128))
    p.add_argument("--dtype", choices=("float16", "bfloat16", "float32"), help="convert dtype")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --mlx-dir")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of mlx_download_weights.py: exit 0 on success, 2 with one error line (1: stdout
    could not be written, the files are kept)."""
    lenient_stdout()
    parser = build_parser()
    args = parser.parse_args(argv)
    for flag, given in (("--quantize", args.quantize), ("--mlx-dir", args.mlx_dir),
                        ("--dtype", args.dtype)):  # fmt: skip
        if given and not args.convert:  # else silently ignored: no MLX copy, no word why
            parser.error(f"{flag} needs --convert")
    out_dir = Path(args.out_dir or Path("weights") / args.model_id.rstrip("/").split("/")[-1])
    mlx_dir = Path(args.mlx_dir or f"{out_dir}-mlx") if args.convert else None
    try:
        check_targets(out_dir, mlx_dir, args.overwrite)
        path = download(
            args.model_id,
            out_dir,
            revision=args.revision,
            include=args.include,
            token=args.token,
            progress=not args.no_progress,
        )
        print(f"Downloaded to {path}")
        print(f"Run it: uv run mlx_main.py --model {path} --input 'Hello'")
        if mlx_dir is not None:
            kind = f"{args.q_bits}-bit quantized " if args.quantize else ""
            print(f"Converting to {kind}MLX in {mlx_dir}")
            convert(
                path,
                mlx_dir,
                quantize=args.quantize,
                q_bits=args.q_bits,
                q_group_size=args.q_group_size,
                dtype=args.dtype,
                overwrite=args.overwrite,
            )
            print(f"Converted to {mlx_dir}")
            print(f"Run it: uv run mlx_main.py --model {mlx_dir} --input 'Hello'")
        sys.stdout.flush()  # a full disk shows here, not as an error at exit
    except EntropixError as err:
        print(f"{parser.prog}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{parser.prog}: interrupted (re-run to resume the download)", file=sys.stderr)
        return 130
    except OSError as err:  # stdout: a full disk, a reader gone (`| head`)
        return output_failed(parser.prog, err)
    return 0
