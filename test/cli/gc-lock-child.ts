// A separate process holding the store's gc lock, for the gc tests (not a test file itself).
//
//   node gc-lock-child.js shared|exclusive <root>
//       takes the lock, prints "locked", and holds it until killed (the kernel drops it then).
import { withGcExclusive, withGcShared } from '../../src/care/gc-lock.js';

const [mode, root] = process.argv.slice(2);
const take = mode === 'exclusive' ? withGcExclusive : withGcShared;
await take({ root: root! }, async () => {
  process.stdout.write('locked\n');
  await new Promise(() => setInterval(() => {}, 1 << 30)); // until killed
});
