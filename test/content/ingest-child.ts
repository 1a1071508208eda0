// A separate process that writes into a content store, for the multi-process tests
// (not a test file itself). Prints one JSON line on stdout when done.
//
//   node ingest-child.js put  <contentDir> <file> <digest> <size>
//       prints "ready", waits for a line on stdin (a start barrier, so all children race), then
//       put()s the file; reports {digest, size, rssGrowth} (peak RSS over the start).
//   node ingest-child.js hold <contentDir> <ref> <digest> <seed> <bytes>
//       opens the ingest, writes <bytes> bytes of seededStream(seed), reports
//       {offset}, then stays alive holding the ingest's lock until killed.
import { createReadStream } from 'node:fs';
import { once } from 'node:events';
import { pipeline } from 'node:stream/promises';
import { ContentStore } from '../../src/content/index.js';
import type { Digest } from '../../src/image/digest.js';
import { seededStream } from '../helpers/seeded.js';

const [mode, dir, ...args] = process.argv.slice(2);
const store = new ContentStore(dir);

if (mode === 'put') {
  const [file, digest, size] = args;
  process.stdin.setEncoding('utf8');
  process.stdout.write('ready\n');
  await once(process.stdin, 'data');
  const base = process.memoryUsage.rss();
  let peak = base;
  const sampler = setInterval(() => (peak = Math.max(peak, process.memoryUsage.rss())), 5);
  const info = await store.put(createReadStream(file), { digest: digest as Digest, size: Number(size) });
  clearInterval(sampler);
  peak = Math.max(peak, process.memoryUsage.rss());
  process.stdout.write(JSON.stringify({ ...info, rssGrowth: peak - base }) + '\n');
  process.exit(0); // stdin is still open
} else if (mode === 'hold') {
  const [ref, digest, seed, bytes] = args;
  const ingest = await store.openIngest(ref, { digest: digest as Digest });
  await pipeline(seededStream(seed, Number(bytes), 64 * 1024), ingest.writable());
  process.stdout.write(JSON.stringify({ offset: ingest.offset }) + '\n');
  setInterval(() => {}, 1 << 30); // hold the lock until killed
} else {
  process.stderr.write(`unknown mode ${mode}\n`);
  process.exit(2);
}
