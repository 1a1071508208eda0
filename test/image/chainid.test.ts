import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { test } from 'node:test';
import { chainId, chainIds } from '../../src/image/chainid.js';
import type { Digest } from '../../src/image/digest.js';

const d = (c: string) => `sha256:${c.repeat(64)}` as Digest;

// The same formula computed by a different tool (sha256sum over the spec's string).
function shellChain(prev: string, next: string): string {
  return 'sha256:' + execFileSync('sha256sum', { input: `${prev} ${next}` }).toString().slice(0, 64);
}

test('chain id of one layer is its diff id', () => {
  assert.deepEqual(chainIds([d('a')]), [d('a')]);
  assert.equal(chainId([d('a')]), d('a'));
});

test('chain ids follow ChainID(n) = sha256(ChainID(n-1) + " " + DiffID(n))', () => {
  const ids = chainIds([d('a'), d('b'), d('c')]);
  assert.equal(ids.length, 3);
  assert.equal(ids[0], d('a'));
  assert.equal(ids[1], shellChain(d('a'), d('b')));
  assert.equal(ids[2], shellChain(ids[1]!, d('c')));
});

test('the same diff ids below give the same chain ids (shared bases)', () => {
  const one = chainIds([d('a'), d('b'), d('c')]);
  const two = chainIds([d('a'), d('b'), d('e')]);
  assert.deepEqual(one.slice(0, 2), two.slice(0, 2));
  assert.notEqual(one[2], two[2]);
});

test('layer order matters', () => {
  assert.notEqual(chainId([d('a'), d('b')]), chainId([d('b'), d('a')]));
});

test('no layers: no chain id', () => {
  assert.deepEqual(chainIds([]), []);
  assert.equal(chainId([]), undefined);
});

test('a malformed diff id is INVALID_ARGUMENT', () => {
  assert.throws(() => chainIds([d('a'), 'sha256:xyz' as Digest]), { code: 'INVALID_ARGUMENT' });
});
