// Digests as value types: parsed and checked in one place.
import { invalidArgument } from '../errors.js';

export type Digest = `sha256:${string}` | `sha512:${string}`;

const PATTERN = /^(sha256:[a-f0-9]{64}|sha512:[a-f0-9]{128})$/;

export function isDigest(s: string): s is Digest {
  return PATTERN.test(s);
}

export function parseDigest(s: string, what = 'digest'): Digest {
  if (!isDigest(s)) throw invalidArgument(`invalid ${what} "${s}": want sha256:<64 hex> or sha512:<128 hex>`);
  return s;
}

export function digestAlgorithm(d: Digest): 'sha256' | 'sha512' {
  return d.slice(0, d.indexOf(':')) as 'sha256' | 'sha512';
}

export function digestHex(d: Digest): string {
  return d.slice(d.indexOf(':') + 1);
}

/** sha256 digest of a byte buffer (for small documents: manifests, configs, chain ids). */
export async function sha256Of(data: Buffer | string): Promise<Digest> {
  const { createHash } = await import('node:crypto');
  return `sha256:${createHash('sha256').update(data).digest('hex')}`;
}
