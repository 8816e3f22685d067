// Builds the web app (index.html) and the API docs (docs/index.html) into dist/, which
// spin.toml mounts as the `web` component's files. docs/openapi.json is generated here
// from the repository's openapi.yaml, so the docs always describe the API that was built.
//
// `npm run dev` serves the same pages with hot reload and forwards API paths to an
// edge-host on EDGE_HOST_URL (default http://127.0.0.1:3000, what scripts/up serves on).
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { defineConfig } from "vite";
import { parse } from "yaml";

const here = (path) => fileURLToPath(new URL(path, import.meta.url));
const specPath = here("../openapi.yaml");
const apiPrefixes = ["/auth", "/todos", "/me", "/health", "/.well-known"];

/** The OpenAPI document as JSON: parsed (so a broken YAML fails the build), not copied. */
function specJson() {
  const spec = parse(readFileSync(specPath, "utf8"));
  if (!spec?.openapi || !spec.paths) {
    throw new Error(`${specPath}: not an OpenAPI document (no openapi or paths field)`);
  }
  return JSON.stringify(spec);
}

function openapiJson() {
  return {
    name: "openapi-json",
    buildStart() {
      this.addWatchFile(specPath);
    },
    generateBundle() {
      this.emitFile({ type: "asset", fileName: "docs/openapi.json", source: specJson() });
    },
    configureServer(server) {
      server.middlewares.use("/docs/openapi.json", (_req, res) => {
        res.setHeader("content-type", "application/json");
        res.end(specJson());
      });
    },
  };
}

const target = process.env.EDGE_HOST_URL ?? "http://127.0.0.1:3000";

export default defineConfig({
  root: here("."),
  base: "/",
  plugins: [openapiJson()],
  server: {
    proxy: Object.fromEntries(apiPrefixes.map((prefix) => [prefix, { target }])),
  },
  build: {
    outDir: here("dist"),
    emptyOutDir: true,
    // No inline polyfill script: the pages' CSP allows scripts from 'self' only.
    modulePreload: { polyfill: false },
    // Small files stay files: `data:` URLs for scripts would break the CSP.
    assetsInlineLimit: 0,
    rollupOptions: {
      input: { app: here("index.html"), docs: here("docs/index.html") },
    },
  },
});
