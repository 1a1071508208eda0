// A second process using the same store while `serve` runs (as the CLI would): prepares
// and commits N snapshots in namespace NS, then prints their keys. Used by server.test.ts.
// Usage: node store-child.js ROOT NS N
import { openSnapshotter } from '../../src/snapshot/index.js';
import { Store } from '../../src/store.js';

const [root, ns, count] = process.argv.slice(2);
const sn = await openSnapshotter(await Store.open(root), 'overlay', { namespace: ns, cleanup: false });
const made: string[] = [];
let parent: string | undefined;
for (let i = 0; i < Number(count); i++) {
  await sn.prepare(`cli-${i}-a`, parent);
  await sn.commit(`cli-${i}`, `cli-${i}-a`);
  parent = `cli-${i}`;
  made.push(parent);
}
await sn.close();
process.stdout.write(JSON.stringify(made) + '\n');
