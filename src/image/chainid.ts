// Chain ids (OCI image spec, config.md "Layer ChainID"): the identity of a layer
// *stack*, not of one layer. A snapshot committed under a chain id is the merged result
// of applying exactly those layers in order, so two images sharing a base share it.
//   ChainID(L0)      = DiffID(L0)
//   ChainID(L0..Ln)  = sha256(ChainID(L0..Ln-1) + " " + DiffID(Ln))
import { createHash } from 'node:crypto';
import { parseDigest, type Digest } from './digest.js';

/** The chain id of every prefix of `diffIds`: result[i] identifies layers 0..i. */
export function chainIds(diffIds: readonly Digest[]): Digest[] {
  const out: Digest[] = [];
  for (const raw of diffIds) {
    const diffId = parseDigest(raw, 'diff id');
    const prev = out[out.length - 1];
    out.push(
      prev === undefined ? diffId : `sha256:${createHash('sha256').update(`${prev} ${diffId}`).digest('hex')}`,
    );
  }
  return out;
}

/** The chain id of the whole stack, or undefined for an image without layers. */
export function chainId(diffIds: readonly Digest[]): Digest | undefined {
  const all = chainIds(diffIds);
  return all[all.length - 1];
}
