#!/usr/bin/env node
// Runs the bundled CLI (dist/bundle/, made by scripts/bundle.mjs after tsc: it starts
// faster) when it is at least as new as the compiled tree, else the compiled tree itself,
// so a bare `npx tsc -p .` during development never runs a stale bundle.
import { statSync } from 'node:fs';

const mtime = (rel) => statSync(new URL(rel, import.meta.url), { throwIfNoEntry: false })?.mtimeMs;
const bundled = mtime('../dist/bundle/cli/main.js');
const compiled = mtime('../dist/src/cli/main.js');
const { main } = await (bundled !== undefined && (compiled === undefined || bundled >= compiled)
  ? import('../dist/bundle/cli/main.js')
  : import('../dist/src/cli/main.js'));
main(process.argv).then((code) => { process.exitCode = code; });
