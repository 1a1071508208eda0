// Images a container runtime can run: an OCI image layout whose first layer is Debian's
// static busybox (/bin/busybox plus /bin/sh, cat, ls, ... as symlinks), followed by layers
// of plain entries (files with modes, directories, symlinks, whiteouts). Push it with
// registry.ts pushLayout.
//
// Needs the Debian package busybox-static (/bin/busybox).
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdir, rename, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGzip } from 'node:zlib';
import tar from 'tar-stream';

export const BUSYBOX = '/bin/busybox';

/** Applets linked in the shell layer. */
export const APPLETS = ['sh', 'cat', 'ls', 'echo', 'id', 'wc', 'test', 'mkdir', 'rm', 'sleep', 'true', 'sync', 'stat', 'head', 'sort'];

export type ImageEntry =
  | { type: 'file'; path: string; content: string | Buffer; mode?: number }
  | { type: 'dir'; path: string; mode?: number }
  | { type: 'symlink'; path: string; target: string }
  /** An OCI whiteout: deletes `path` of the layers below. */
  | { type: 'whiteout'; path: string };

export interface ShellImage {
  dir: string;
  tag: string;
  manifestDigest: string;
  /** Uncompressed layer digests, bottom first (the shell layer is [0]). */
  diffIds: string[];
}

const MTIME = new Date('2024-01-01T00:00:00Z');

function addEntry(pack: tar.Pack, header: Partial<tar.Header> & { name: string }, body?: Buffer): Promise<void> {
  return new Promise((resolve, reject) => pack.entry(header, body ?? Buffer.alloc(0), (e) => (e ? reject(e) : resolve())));
}

/** Streams one gzip layer into the layout's blobs; returns its digests and size. */
async function writeLayer(
  dir: string,
  fill: (pack: tar.Pack) => Promise<void>,
): Promise<{ digest: string; size: number; diffId: string }> {
  const pack = tar.pack();
  const diff = createHash('sha256');
  const blob = createHash('sha256');
  let size = 0;
  const tap = (h: ReturnType<typeof createHash>, count: boolean) =>
    new Transform({
      transform(chunk: Buffer, _enc, cb) {
        h.update(chunk);
        if (count) size += chunk.length;
        cb(null, chunk);
      },
    });
  const tmp = join(dir, 'blobs', `.tmp-${randomBytes(6).toString('hex')}`);
  const done = pipeline(pack, tap(diff, false), createGzip(), tap(blob, true), createWriteStream(tmp));
  await fill(pack);
  pack.finalize();
  await done;
  const hex = blob.digest('hex');
  await rename(tmp, join(dir, 'blobs', 'sha256', hex));
  return { digest: `sha256:${hex}`, size, diffId: `sha256:${diff.digest('hex')}` };
}

async function shellLayer(pack: tar.Pack): Promise<void> {
  for (const d of ['bin', 'etc', 'tmp', 'proc', 'sys', 'dev', 'root']) {
    await addEntry(pack, { name: `${d}/`, type: 'directory', mode: d === 'tmp' ? 0o1777 : 0o755, mtime: MTIME });
  }
  // The binary is streamed, not read into memory.
  const size = (await stat(BUSYBOX)).size;
  await new Promise<void>((resolve, reject) => {
    const entry = pack.entry({ name: 'bin/busybox', type: 'file', mode: 0o755, size, mtime: MTIME }, (e) =>
      e ? reject(e) : resolve(),
    );
    createReadStream(BUSYBOX).on('error', reject).pipe(entry);
  });
  for (const a of APPLETS) {
    await addEntry(pack, { name: `bin/${a}`, type: 'symlink', linkname: 'busybox', mode: 0o777, mtime: MTIME });
  }
  await addEntry(pack, { name: 'etc/passwd', type: 'file', mode: 0o644, mtime: MTIME }, Buffer.from('root:x:0:0:root:/root:/bin/sh\n'));
  await addEntry(pack, { name: 'etc/group', type: 'file', mode: 0o644, mtime: MTIME }, Buffer.from('root:x:0:\n'));
}

async function entriesLayer(pack: tar.Pack, entries: ImageEntry[]): Promise<void> {
  for (const e of entries) {
    const base = { name: e.path.replace(/^\/+/, ''), mtime: MTIME };
    switch (e.type) {
      case 'file':
        await addEntry(pack, { ...base, type: 'file', mode: e.mode ?? 0o644 }, Buffer.from(e.content));
        break;
      case 'dir':
        await addEntry(pack, { ...base, name: `${base.name}/`, type: 'directory', mode: e.mode ?? 0o755 });
        break;
      case 'symlink':
        await addEntry(pack, { ...base, type: 'symlink', linkname: e.target, mode: 0o777 });
        break;
      case 'whiteout': {
        const slash = base.name.lastIndexOf('/');
        const name = `${base.name.slice(0, slash + 1)}.wh.${base.name.slice(slash + 1)}`;
        await addEntry(pack, { ...base, name, type: 'file', mode: 0o644 });
        break;
      }
    }
  }
}

async function writeJsonBlob(dir: string, value: unknown): Promise<{ digest: string; size: number }> {
  const data = Buffer.from(JSON.stringify(value));
  const hex = createHash('sha256').update(data).digest('hex');
  await writeFile(join(dir, 'blobs', 'sha256', hex), data);
  return { digest: `sha256:${hex}`, size: data.length };
}

/** Writes an OCI layout in `dir`: the busybox layer, then one layer per element of `layers`. */
export async function buildShellImage(dir: string, layers: ImageEntry[][], tag = 'latest'): Promise<ShellImage> {
  await mkdir(join(dir, 'blobs', 'sha256'), { recursive: true });
  await writeFile(join(dir, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }));
  const built = [await writeLayer(dir, shellLayer)];
  for (const entries of layers) built.push(await writeLayer(dir, (pack) => entriesLayer(pack, entries)));
  const config = await writeJsonBlob(dir, {
    architecture: 'amd64',
    os: 'linux',
    created: '2024-01-01T00:00:00Z',
    config: { Env: ['PATH=/bin'], Cmd: ['/bin/sh'] },
    rootfs: { type: 'layers', diff_ids: built.map((l) => l.diffId) },
    history: built.map((_, i) => ({ created: '2024-01-01T00:00:00Z', created_by: `layer ${i}` })),
  });
  const manifest = await writeJsonBlob(dir, {
    schemaVersion: 2,
    mediaType: 'application/vnd.oci.image.manifest.v1+json',
    config: { mediaType: 'application/vnd.oci.image.config.v1+json', ...config },
    layers: built.map((l) => ({ mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', digest: l.digest, size: l.size })),
  });
  await writeFile(
    join(dir, 'index.json'),
    JSON.stringify({
      schemaVersion: 2,
      manifests: [
        {
          mediaType: 'application/vnd.oci.image.manifest.v1+json',
          ...manifest,
          annotations: { 'org.opencontainers.image.ref.name': tag },
        },
      ],
    }),
  );
  return { dir, tag, manifestDigest: manifest.digest, diffIds: built.map((l) => l.diffId) };
}
