// The benchmark image: three gzip layers cut from this machine's own Debian install
// (real files: headers, Python and Perl modules, man pages, compiler binaries, symlinks,
// hard links), about 120 MB compressed and 370 MB unpacked, the top layer deleting some files of the base with
// whiteouts. Built once into an OCI layout and cached (the tars are made with GNU tar
// in a deterministic way, so a rebuild gives the same digests).
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { access, mkdir, mkdtemp, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

export interface BenchLayer {
  /** Paths under / for this layer. */
  paths: string[];
  /** Paths of lower layers this layer deletes (whiteouts). */
  whiteouts?: string[];
}

export const LAYERS: BenchLayer[] = [
  { paths: ['usr/include', 'usr/lib/python3', 'usr/share/perl'] },
  { paths: ['usr/share/man', 'usr/lib/gcc'] },
  { paths: ['usr/share/zoneinfo', 'etc/ssl'], whiteouts: ['usr/include/linux', 'usr/lib/python3/dist-packages/pip'] },
];

const sha256File = (path: string) =>
  new Promise<{ digest: string; size: number }>((resolve, reject) => {
    const h = createHash('sha256');
    let size = 0;
    createReadStream(path)
      .on('data', (c) => {
        h.update(c as Buffer);
        size += (c as Buffer).length;
      })
      .on('error', reject)
      .on('end', () => resolve({ digest: `sha256:${h.digest('hex')}`, size }));
  });

/** Builds (or reuses) the layout in `dir`; returns its tag. */
export async function buildBenchLayout(dir: string): Promise<string> {
  const tag = 'latest';
  try {
    await access(join(dir, 'index.json'));
    return tag;
  } catch {
    // build it
  }
  await rm(dir, { recursive: true, force: true });
  await mkdir(join(dir, 'blobs', 'sha256'), { recursive: true });
  const scratch = await mkdtemp(join(dir, '.build-'));
  const layers: Array<{ digest: string; size: number; diffId: string }> = [];
  try {
    for (const [i, l] of LAYERS.entries()) {
      const tarPath = join(scratch, `layer${i}.tar`);
      const tarArgs = ['--sort=name', '--mtime=2024-01-01 00:00:00', '--owner=0', '--group=0', '--numeric-owner', '--format=posix',
        '--pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime'];
      let extra: string[] = [];
      if (l.whiteouts?.length) {
        // Whiteout files in a side tree, added to the same tar.
        const wh = join(scratch, `wh${i}`);
        for (const p of l.whiteouts) {
          const parent = join(wh, p, '..');
          await mkdir(parent, { recursive: true });
          await writeFile(join(parent, `.wh.${p.split('/').pop()}`), '');
        }
        extra = ['-C', wh, ...l.whiteouts.map((p) => join(p, '..', `.wh.${p.split('/').pop()}`))];
      }
      await run('tar', ['-cf', tarPath, ...tarArgs, '-C', '/', ...l.paths, ...extra], { maxBuffer: 64 << 20 });
      const diff = await sha256File(tarPath);
      await run('sh', ['-c', `gzip -6 -n -c '${tarPath}' > '${tarPath}.gz'`]);
      const blob = await sha256File(`${tarPath}.gz`);
      await rename(`${tarPath}.gz`, join(dir, 'blobs', 'sha256', blob.digest.slice(7)));
      await rm(tarPath);
      layers.push({ ...blob, diffId: diff.digest });
    }
    const put = async (data: string) => {
      const digest = `sha256:${createHash('sha256').update(data).digest('hex')}`;
      await writeFile(join(dir, 'blobs', 'sha256', digest.slice(7)), data);
      return { digest, size: Buffer.byteLength(data) };
    };
    const config = await put(JSON.stringify({
      architecture: 'amd64',
      os: 'linux',
      created: '2024-01-01T00:00:00Z',
      config: { Env: ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'], Cmd: ['/bin/sh'] },
      rootfs: { type: 'layers', diff_ids: layers.map((l) => l.diffId) },
      history: layers.map((_, i) => ({ created: '2024-01-01T00:00:00Z', created_by: `bench layer ${i}` })),
    }));
    const manifest = await put(JSON.stringify({
      schemaVersion: 2,
      mediaType: 'application/vnd.oci.image.manifest.v1+json',
      config: { mediaType: 'application/vnd.oci.image.config.v1+json', ...config },
      layers: layers.map((l) => ({ mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', digest: l.digest, size: l.size })),
    }));
    await writeFile(join(dir, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }));
    await writeFile(join(dir, 'index.json'), JSON.stringify({
      schemaVersion: 2,
      manifests: [{
        mediaType: 'application/vnd.oci.image.manifest.v1+json', ...manifest,
        annotations: { 'org.opencontainers.image.ref.name': tag },
      }],
    }));
  } finally {
    await rm(scratch, { recursive: true, force: true });
  }
  return tag;
}

/** Sizes of the layout's image: compressed and uncompressed bytes. */
export async function layoutSizes(dir: string): Promise<{ layers: number; compressed: number }> {
  const index = JSON.parse(await readFile(join(dir, 'index.json'), 'utf8'));
  const m = JSON.parse(await readFile(join(dir, 'blobs', 'sha256', index.manifests[0].digest.slice(7)), 'utf8'));
  let compressed = 0;
  for (const l of m.layers) compressed += (await stat(join(dir, 'blobs', 'sha256', l.digest.slice(7)))).size;
  return { layers: m.layers.length, compressed };
}
