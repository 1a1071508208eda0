// Transactions of the metadata store: get/put/del/list, read-your-writes, and all-or-nothing.
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { MetadataStore } from '../../src/metadata/index.js';
import { makeTmpDir, removeTmpDir } from '../helpers/tmp.js';

describe('metadata transactions', () => {
  let tmp: string;
  let store: MetadataStore;
  let n = 0;
  before(async () => {
    tmp = await makeTmpDir('metadata-tx');
  });
  after(async () => {
    await removeTmpDir(tmp);
  });
  const fresh = () => (store = new MetadataStore(join(tmp, `db${n++}`)));

  it('get of a missing key is undefined; put values round-trip as JSON', async () => {
    fresh();
    assert.equal(await store.read((tx) => tx.get('nope')), undefined);
    const value = { a: 1, b: ['x', null, true], c: { d: 'é' } };
    await store.transaction(async (tx) => tx.put('k', value));
    assert.deepEqual(await store.read((tx) => tx.get('k')), value);
  });

  it('reads see the transaction’s own puts and deletes before commit', async () => {
    fresh();
    await store.transaction(async (tx) => {
      tx.put('a', 1);
      tx.put('b', 2);
    });
    await store.transaction(async (tx) => {
      tx.put('a', 10);
      tx.del('b');
      tx.put('c', 3);
      assert.equal(await tx.get('a'), 10);
      assert.equal(await tx.get('b'), undefined);
      assert.equal(await tx.get('c'), 3);
      tx.del('c');
      assert.equal(await tx.get('c'), undefined);
      tx.put('c', 4);
      assert.equal(await tx.get('c'), 4);
    });
    assert.deepEqual(await store.read(async (tx) => [await tx.get('a'), await tx.get('b'), await tx.get('c')]), [10, undefined, 4]);
  });

  it('list returns one prefix in key order, merged with pending writes', async () => {
    fresh();
    await store.transaction(async (tx) => {
      for (const k of ['p/b', 'p/a', 'p/c', 'q/a', 'p']) tx.put(k, k);
    });
    await store.transaction(async (tx) => {
      tx.del('p/b');
      tx.put('p/0', 'new');
      tx.put('p/c', 'changed');
      assert.deepEqual(await tx.list('p/'), [
        ['p/0', 'new'],
        ['p/a', 'p/a'],
        ['p/c', 'changed'],
      ]);
      assert.deepEqual(await tx.list('none/'), []);
    });
    assert.deepEqual((await store.read((tx) => tx.list('p/'))).map(([k]) => k), ['p/0', 'p/a', 'p/c']);
  });

  it('a transaction that throws writes nothing and the error reaches the caller', async () => {
    fresh();
    await store.transaction(async (tx) => tx.put('k', 'before'));
    await assert.rejects(
      store.transaction(async (tx) => {
        tx.put('k', 'after');
        tx.put('other', 1);
        throw new Error('changed my mind');
      }),
      /changed my mind/,
    );
    assert.deepEqual(await store.read(async (tx) => [await tx.get('k'), await tx.get('other')]), ['before', undefined]);
    // The store is usable afterwards (the failed transaction released the database).
    await store.transaction(async (tx) => tx.put('k', 'again'));
    assert.equal(await store.read((tx) => tx.get('k')), 'again');
  });

  it('in-process transactions run one at a time in call order', async () => {
    fresh();
    const order: number[] = [];
    await Promise.all(
      [0, 1, 2, 3, 4].map((i) =>
        store.transaction(async (tx) => {
          order.push(i);
          const v = (await tx.get<number>('n')) ?? 0;
          await new Promise((r) => setTimeout(r, 5));
          tx.put('n', v + 1);
        }),
      ),
    );
    assert.deepEqual(order, [0, 1, 2, 3, 4]);
    assert.equal(await store.read((tx) => tx.get('n')), 5);
  });
});
