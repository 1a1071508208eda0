#!/usr/bin/env node
// Bundles the compiled CLI (dist/src/cli/main.js) and what it imports into a few files
// under dist/bundle/cli/, which bin/tslayer.js runs when they are newer than the
// compiled tree. Why: Node resolves, reads and links every module one by one, and the
// ~100 modules of a `tslayer mount` (abstract-level alone is 20) cost tens of ms of a
// command that otherwise takes a few. Splitting keeps each command's module a chunk of
// its own, loaded only when that command runs.
//
// The bundle sits three directories deep, as dist/src/cli/main.js does, so the paths the
// code computes from import.meta.url (package.json, the addon, the .proto files) resolve
// the same. Native modules stay outside it: the addon, zstd-napi, gRPC (loaded by serve).
import { build } from 'esbuild';
import { rmSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));

/**
 * classic-level finds its binary from its own __dirname, which a bundle loses; and
 * node-gyp-build's search (build dirs, then every prebuild's tags) costs ~6 ms a run.
 * So: the glibc prebuild for this platform straight away, node-gyp-build's search when
 * that does not load (musl, another arch, a source build only).
 */
const classicLevelBinding = {
  name: 'classic-level-binding',
  setup(b) {
    b.onLoad({ filter: /classic-level[\\/]binding\.js$/ }, () => ({
      contents: `
        const dir = require('path').dirname(require.resolve('classic-level/package.json'));
        let binding;
        try {
          binding = require(dir + '/prebuilds/' + process.platform + '-' + process.arch + '/classic-level.node');
        } catch {
          binding = require('node-gyp-build')(dir);
        }
        module.exports = binding;`,
      loader: 'js',
    }));
  },
};

// Chunk names change with their contents: old ones would only pile up.
rmSync(new URL('../dist/bundle', import.meta.url), { recursive: true, force: true });

await build({
  absWorkingDir: root,
  entryPoints: { main: 'dist/src/cli/main.js', 'gzip-worker': 'dist/src/archive/gzip-worker.js' },
  outdir: 'dist/bundle/cli',
  bundle: true,
  splitting: true,
  format: 'esm',
  platform: 'node',
  target: 'node20',
  external: ['*.node', 'zstd-napi', '@grpc/grpc-js', '@grpc/proto-loader', 'node-gyp-build'],
  // Bundled CommonJS calls require(); an ES module has none of its own.
  banner: { js: "import { createRequire as __tslayerCreateRequire } from 'node:module'; const require = __tslayerCreateRequire(import.meta.url);" },
  plugins: [classicLevelBinding],
  logLevel: 'warning',
});
