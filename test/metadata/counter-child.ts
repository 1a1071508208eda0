// Child process for concurrency.test.ts: increments one counter key COUNT times, each
// time as its own read-modify-write transaction, then prints "done".
// Usage: node counter-child.js DIR KEY COUNT
import { MetadataStore } from '../../src/metadata/index.js';

const [dir, key, count] = process.argv.slice(2) as [string, string, string];
const store = new MetadataStore(dir);
for (let i = 0; i < Number(count); i++) {
  await store.transaction(async (tx) => {
    const v = (await tx.get<number>(key)) ?? 0;
    // Yield between the read and the write, so a lost update would show if the lock didn't hold.
    await new Promise((r) => setImmediate(r));
    tx.put(key, v + 1);
  });
}
process.stdout.write('done\n');
