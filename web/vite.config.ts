import { defineConfig } from "vite";

// The built app goes where careteamd embeds it; its file names carry
// content hashes, so a build from the same sources and lock file is the
// same bytes, which CI checks.
export default defineConfig({
  build: {
    outDir: "../server/internal/web/dist",
    emptyOutDir: true,
    sourcemap: false,
    target: "es2022",
    modulePreload: { polyfill: false },
  },
});
