// The change both commit benchmarks write into a mounted container (bench/commit/run.ts
// for tslayer and podman, bench/ops/commit-buildah.ts for buildah): change/dNNN/fI, 100
// files per directory, 0.5-4 KiB each, plus change/big; the same bytes on every run.
import { createCipheriv, createHash } from 'node:crypto';
import { closeSync, mkdirSync, openSync, writeSync } from 'node:fs';
import { join } from 'node:path';

export interface ChangeShape {
  files: number;
  bigMb: number;
  /** 'random' is incompressible; 'text' is base64 lines (compresses about 4:3). */
  content: 'random' | 'text';
}

/** Deterministic bytes (AES-CTR keystream); `text` turns them into base64 lines. */
function bytes(seed: string, size: number, content: ChangeShape['content']): Buffer {
  const cipher = createCipheriv('aes-256-ctr', createHash('sha256').update(seed).digest(), Buffer.alloc(16));
  if (content === 'random') return cipher.update(Buffer.alloc(size));
  const raw = cipher.update(Buffer.alloc(Math.ceil((size * 3) / 4) + 3));
  return Buffer.from(raw.toString('base64').replace(/(.{76})/g, '$1\n').slice(0, size));
}

/** Writes the change into `root` (a mounted container view). */
export function writeChange(root: string, a: ChangeShape): void {
  const top = join(root, 'change');
  mkdirSync(top);
  for (let i = 0; i < a.files; i++) {
    const d = join(top, `d${String(Math.floor(i / 100)).padStart(3, '0')}`);
    if (i % 100 === 0) mkdirSync(d);
    const size = 512 + ((i * 2654435761) % 3585);
    const fd = openSync(join(d, `f${i}`), 'w');
    writeSync(fd, bytes(`small-${i}`, size, a.content));
    closeSync(fd);
  }
  const fd = openSync(join(top, 'big'), 'w');
  const MB = 1 << 20;
  for (let i = 0; i < a.bigMb; i++) writeSync(fd, bytes(`big-${i}`, MB, a.content));
  closeSync(fd);
}
