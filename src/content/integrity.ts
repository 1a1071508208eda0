// Hashing and the two integrity errors, in one place. ssri does the hashing so that
// content/ speaks the same integrity dialect as npm's cacache; OCI digests are hex,
// ssri's are SRI base64, so we convert at this boundary only.
import { createRequire } from 'node:module';
import type ssri from 'ssri';
import { TslayerError } from '../errors.js';
import { digestAlgorithm, digestHex, type Digest } from '../image/digest.js';

// ssri is loaded on the first hash: commands that never hash (images, mount of an
// unpacked image) skip its ~15 ms of loading at start-up.
let ssriModule: typeof ssri | undefined;
export function loadSsri(): typeof ssri {
  return (ssriModule ??= createRequire(import.meta.url)('ssri') as typeof ssri);
}

export type Algorithm = 'sha256' | 'sha512';

/** The SRI form of a hex digest (`sha256:ab..` -> `sha256-q8..=`), for ssri. */
export function toIntegrity(digest: Digest): ssri.Integrity {
  return loadSsri().fromHex(digestHex(digest), digestAlgorithm(digest));
}

/** The OCI form of a single-hash SRI. */
export function fromIntegrity(sri: ssri.Integrity | ssri.Hash, algorithm: Algorithm): Digest {
  return `${algorithm}:${sri.hexDigest()}`;
}

/** An incremental hasher that can be fed staged bytes first and new bytes after (resume). */
export interface Hasher {
  update(chunk: Buffer): void;
  digest(): Digest;
}

export function createHasher(algorithm: Algorithm): Hasher {
  const h = loadSsri().create({ algorithms: [algorithm] });
  return {
    update: (chunk) => void h.update(chunk),
    // @types/ssri types create() as a crypto Hash; ssri 13 returns an Integrity.
    digest: () => fromIntegrity(h.digest() as unknown as ssri.Integrity, algorithm),
  };
}

/** `what` names the blob or ingest ref; messages name both the expected and the found value. */
export function integrityError(what: string, expected: Digest, found: Digest): TslayerError {
  return new TslayerError('EINTEGRITY', `blob ${what}: expected digest ${expected}, got ${found}`);
}

export function sizeError(what: string, expected: number, found: number, atLeast = false): TslayerError {
  return new TslayerError('EBADSIZE', `blob ${what}: expected size ${expected}, got ${atLeast ? 'at least ' : ''}${found}`);
}
