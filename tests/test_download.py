"""mlx_download_weights.py against a loopback stand-in for the Hugging Face hub (HF_ENDPOINT).

The fake hub implements the endpoints ``snapshot_download`` uses: model info
(``/api/models/{repo}[/revision/{rev}]``), the file listing (``/api/models/{repo}/tree/{rev}``) and
file resolution (``HEAD``/``GET /{repo}/resolve/{rev}/{path}`` with ETag, X-Repo-Commit and
Content-Length), plus the 401/403 ``X-Error-Code: GatedRepo`` answers of a gated repo.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = str(ROOT / "mlx_download_weights.py")
GOOD_TOKEN = "hf_approved"
PENDING_TOKEN = "hf_not_yet_approved"

# A Llama-like repo: what we need plus what we must not fetch (README, the original Meta copy).
TINY_FILES = {
    "config.json": b'{"model_type": "llama"}',
    "generation_config.json": b"{}",
    "model-00001-of-00002.safetensors": b"A" * 3000,
    "model-00002-of-00002.safetensors": b"B" * 2000,
    "model.safetensors.index.json": b'{"weight_map": {}}',
    "tokenizer.json": b'{"model": {}}',
    "tokenizer_config.json": b"{}",
    "special_tokens_map.json": b"{}",
    "README.md": b"# tiny",
    ".gitattributes": b"*.safetensors filter=lfs",
    "original/consolidated.00.pth": b"P" * 5000,
    "original/params.json": b"{}",
    "pytorch_model.bin": b"T" * 4000,
}


class FakeHub:
    """A threaded loopback HTTP server holding a few repos: {repo_id: {path: bytes}}."""

    def __init__(self, repos: dict[str, dict[str, bytes]], gated: set[str] = frozenset()):
        self.repos = repos
        self.gated = set(gated)
        self.requests: list[tuple[str, str]] = []
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep pytest output clean
                pass

            def do_HEAD(self):
                hub.handle(self, head=True)

            def do_GET(self):
                hub.handle(self, head=False)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> FakeHub:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()

    @staticmethod
    def sha(repo_id: str) -> str:
        return hashlib.sha1(repo_id.encode()).hexdigest()

    def reply(self, h, status: int, body: bytes = b"", headers=None, head=False) -> None:
        h.send_response(status)
        for k, v in (headers or {}).items():
            h.send_header(k, v)
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        if not head:
            h.wfile.write(body)

    def error(self, h, status: int, code: str, message: str, head: bool) -> None:
        headers = {"X-Error-Code": code, "X-Error-Message": message}
        body = json.dumps({"error": message}).encode()
        self.reply(h, status, body, {**headers, "Content-Type": "application/json"}, head)

    def handle(self, h: BaseHTTPRequestHandler, head: bool) -> None:
        path = unquote(urlparse(h.path).path)
        self.requests.append((h.command, path))
        parts = path.strip("/").split("/")
        api = parts[:2] == ["api", "models"]
        repo_id = "/".join(parts[2:4] if api else parts[0:2])
        files = self.repos.get(repo_id)
        if files is None:  # the real hub answers 401 RepoNotFound to anonymous callers
            return self.error(h, 401, "RepoNotFound", "Repository not found", head)
        sha = self.sha(repo_id)
        if api and (len(parts) == 4 or parts[4:5] == ["revision"]):
            info = {
                "id": repo_id,
                "sha": sha,
                "private": False,
                "gated": "manual" if repo_id in self.gated else False,
                "siblings": [{"rfilename": p} for p in files],
            }
            return self.reply(
                h, 200, json.dumps(info).encode(), {"Content-Type": "application/json"}
            )
        if api and parts[4:5] == ["tree"]:
            tree = [
                {"type": "file", "path": p, "size": len(b), "oid": hashlib.sha1(b).hexdigest()}
                for p, b in files.items()
            ]
            return self.reply(
                h, 200, json.dumps(tree).encode(), {"Content-Type": "application/json"}
            )
        if not api and parts[2:3] == ["resolve"]:
            auth = h.headers.get("Authorization", "")
            if repo_id in self.gated and auth != f"Bearer {GOOD_TOKEN}":
                status = 403 if auth else 401
                msg = f"Access to model {repo_id} is restricted."
                return self.error(h, status, "GatedRepo", msg, head)
            name = "/".join(parts[4:])
            if name not in files:
                return self.error(h, 404, "EntryNotFound", f"{name} does not exist", head)
            body = files[name]
            headers = {
                "ETag": f'"{hashlib.sha256(body).hexdigest()}"',
                "X-Repo-Commit": sha,
                "Content-Type": "application/octet-stream",
            }
            return self.reply(h, 200, body, headers, head)
        return self.error(h, 404, "EntryNotFound", "not found", head)


def run(hub: FakeHub, tmp_path: Path, *args: str, token: str | None = None, stdout=None,
        env_extra: dict[str, str] | None = None):  # fmt: skip
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGING"))}
    env |= {
        "HF_ENDPOINT": hub.url,
        "HF_HOME": str(tmp_path / "hf_home"),  # no saved login, no shared cache
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "NO_PROXY": "127.0.0.1,localhost",
        "no_proxy": "127.0.0.1,localhost",
    }
    if token:
        env["HF_TOKEN"] = token
    env |= env_extra or {}
    return subprocess.run(
        [sys.executable, SCRIPT, *args],
        stdout=subprocess.PIPE if stdout is None else stdout,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=120,
    )


def assert_one_error_line(proc, *needles: str) -> None:
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("mlx_download_weights.py: error: ")]
    assert len(errors) == 1, proc.stderr
    for needle in needles:
        assert needle in errors[0], errors[0]


def test_downloads_only_the_needed_files(tmp_path: Path):
    with FakeHub({"acme/tiny-llama": TINY_FILES}) as hub:
        proc = run(hub, tmp_path, "--model-id", "acme/tiny-llama", "--out-dir", "w")
    assert proc.returncode == 0, proc.stderr
    out = tmp_path / "w"
    got = sorted(
        str(p.relative_to(out)) for p in out.rglob("*") if p.is_file() and ".cache" not in p.parts
    )
    want = sorted(p for p in TINY_FILES if p.endswith((".json", ".safetensors")) and "/" not in p)
    assert got == want
    for p in want:
        assert (out / p).read_bytes() == TINY_FILES[p]
    # The unneeded files were never even requested.
    fetched = {path for method, path in hub.requests if "/resolve/" in path}
    assert not any(p.endswith(("README.md", ".pth", ".bin", "params.json")) for p in fetched)
    assert "Downloading 8 files (0.0 MB) from acme/tiny-llama to w" in proc.stdout
    assert f"Downloaded to {out.resolve()}" in proc.stdout


def test_an_ascii_or_full_stdout_is_no_traceback(tmp_path: Path):
    # Found by review: PYTHONIOENCODING=ascii ended in a UnicodeEncodeError traceback at an
    # --out-dir with an 'é'; a stdout on a full disk in "Exception ignored ... OSError", exit 120.
    args = ("--model-id", "acme/tiny-llama", "--out-dir", "modèle", "--no-progress")
    with FakeHub({"acme/tiny-llama": TINY_FILES}) as hub:
        proc = run(hub, tmp_path, *args, env_extra={"PYTHONIOENCODING": "ascii"})
        assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
        assert "to mod?le" in proc.stdout
        with open("/dev/full", "w") as full:
            proc = run(hub, tmp_path, *args[:3], "full", stdout=full)
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.splitlines()[-1] == "mlx_download_weights.py: error: No space left on device"
    assert "Traceback" not in proc.stderr, proc.stderr


def test_default_out_dir_and_include(tmp_path: Path):
    repo = {"acme/q-gguf": {"m.Q4_0.gguf": b"G" * 100, "m.Q8_0.gguf": b"H" * 200}}
    with FakeHub(repo) as hub:
        refused = run(hub, tmp_path, "--model-id", "acme/q-gguf")
        proc = run(hub, tmp_path, "--model-id", "acme/q-gguf", "--include", "*Q8_0.gguf")
    assert_one_error_line(refused, "no weights", "--include m.Q4_0.gguf")
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in (tmp_path / "weights" / "q-gguf").glob("*.gguf")) == [
        "m.Q8_0.gguf"
    ]


def test_gated_repo_needs_login_and_access(tmp_path: Path):
    with FakeHub({"meta/gated": TINY_FILES}, gated={"meta/gated"}) as hub:
        anonymous = run(hub, tmp_path, "--model-id", "meta/gated", "--out-dir", "a")
        pending = run(
            hub, tmp_path, "--model-id", "meta/gated", "--out-dir", "b", token=PENDING_TOKEN
        )
        approved = run(
            hub, tmp_path, "--model-id", "meta/gated", "--out-dir", "c", token=GOOD_TOKEN
        )
    assert_one_error_line(anonymous, "gated repo", "not logged in", "hf auth login", hub.url)
    assert_one_error_line(pending, "gated repo", "no access yet")
    assert approved.returncode == 0, approved.stderr
    assert (tmp_path / "c" / "model-00002-of-00002.safetensors").stat().st_size == 2000


def test_unknown_repo_bad_id_and_unreachable_hub(tmp_path: Path):
    with FakeHub({}) as hub:
        unknown = run(hub, tmp_path, "--model-id", "acme/nope")
        bad_id = run(hub, tmp_path, "--model-id", "not-a-repo-id")
        url = hub.url
    assert_one_error_line(unknown, "repository not found: acme/nope", "log in")
    assert_one_error_line(bad_id, "not a Hugging Face repo id")

    class Closed:  # the server is gone: connection refused
        pass

    closed = Closed()
    closed.url = url
    offline = run(closed, tmp_path, "--model-id", "acme/tiny", "--out-dir", "x")
    assert_one_error_line(offline, "cannot download acme/tiny from http://127.0.0.1")


@pytest.mark.parametrize("args", [["--quantize"], ["--mlx-dir", "m"], ["--dtype", "float16"]])
def test_conversion_flags_need_convert(tmp_path: Path, args: list[str]):
    # Found by use: --mlx-dir and --dtype without --convert were ignored without a word.
    with FakeHub({}) as hub:
        proc = run(hub, tmp_path, *args)
    assert proc.returncode == 2 and f"{args[0]} needs --convert" in proc.stderr


def test_download_and_convert_to_quantized_mlx(tmp_path: Path, embedded):
    from mlx_entropix.io.load import load

    from tests.test_load import write_tiny_hf

    src = write_tiny_hf(tmp_path / "src", embedded.tokenizer)
    files = {str(p.relative_to(src)): p.read_bytes() for p in src.rglob("*") if p.is_file()}
    with FakeHub({"acme/tiny-real": files}) as hub:
        args = ["--model-id", "acme/tiny-real", "--out-dir", "dl", "--no-progress"]
        proc = run(hub, tmp_path, *args, "--convert", "--quantize", "--q-group-size", "32")
        again = run(hub, tmp_path, *args, "--convert")
    assert proc.returncode == 0, proc.stderr
    assert "Converted to dl-mlx" in proc.stdout
    lm = load(str(tmp_path / "dl-mlx"))
    assert lm.info.format == "mlx" and "4-bit" in lm.info.stored_as
    assert_one_error_line(again, "dl-mlx already exists", "--overwrite")


def test_unusable_target_dirs_fail_before_the_download(tmp_path: Path):
    # Found by use: an existing --mlx-dir was refused only after the whole download, and
    # "--mlx-dir = --out-dir --overwrite" deleted the download before converting it.
    (tmp_path / "a_file").write_text("x")
    (tmp_path / "old-mlx").mkdir()
    (tmp_path / "w").mkdir()
    cases = [
        (["--out-dir", "a_file"], "a_file is a file, not a directory"),
        (["--out-dir", "old", "--convert"], "old-mlx already exists", "--overwrite"),
        (["--out-dir", "w", "--convert", "--mlx-dir", "w", "--overwrite"], "would hold the"),
        (["--out-dir", "w/src", "--convert", "--mlx-dir", "w", "--overwrite"], "would hold the"),
    ]
    with FakeHub({"acme/tiny-llama": TINY_FILES}) as hub:
        for args, *needles in cases:
            proc = run(hub, tmp_path, "--model-id", "acme/tiny-llama", *args)
            assert_one_error_line(proc, *needles)
        assert hub.requests == []  # the hub was never asked
    assert (tmp_path / "w").is_dir() and (tmp_path / "old-mlx").is_dir()


@pytest.mark.parametrize("flag", ["--help"])
def test_help(tmp_path: Path, flag: str):
    with FakeHub({}) as hub:
        proc = run(hub, tmp_path, flag)
    assert proc.returncode == 0 and "--model-id" in proc.stdout and "--convert" in proc.stdout
