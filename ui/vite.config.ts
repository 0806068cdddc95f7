// `bun run dev`: the UI with hot reload, proxying the API to mlx_server.py on port 8000.
// `bun run build`: static files in mlx_entropix/server/static (package data), served at `/`.
import { ServerResponse } from "node:http";
import { defineConfig, type Plugin, type ProxyOptions } from "vite";
import react from "@vitejs/plugin-react";

const API = process.env.MLX_ENTROPIX_API ?? "http://127.0.0.1:8000";
const HINT = `Start the API server in another terminal: \`uv run mlx_server.py\` (expected at ${API}).`;

// Tell the developer at start-up (and on proxy errors) when the API server is not up.
function apiCheck(): Plugin {
  return {
    name: "mlx-entropix-api-check",
    apply: "serve",
    configureServer() {
      fetch(`${API}/api/health`)
        .then((r) => {
          if (!r.ok) throw new Error(String(r.status));
          console.log(`\n  API server is up at ${API}\n`);
        })
        .catch(() => console.warn(`\n  ! No API server at ${API}. ${HINT}\n`));
    },
  };
}

// When the API server is down, answer 502 with a `detail` the UI shows as is.
const proxy: ProxyOptions = {
  target: API,
  changeOrigin: true,
  configure: (p) => {
    p.on("error", (_err, _req, res) => {
      console.warn(`  ! API request failed. ${HINT}`);
      if (res instanceof ServerResponse && !res.headersSent && !res.writableEnded) {
        res.writeHead(502, { "Content-Type": "application/json" });
        res.end(JSON.stringify({ detail: `No API server at ${API}. ${HINT}` }));
      }
    });
  },
};

export default defineConfig({
  plugins: [react(), apiCheck()],
  server: { proxy: { "/api": proxy, "/v1": proxy } },
  build: { outDir: "../mlx_entropix/server/static", emptyOutDir: true, chunkSizeWarningLimit: 1200 },
});
