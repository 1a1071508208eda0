// A real registry for tests: Debian's docker-registry (CNCF distribution 2.8) on 127.0.0.1,
// with optional htpasswd or token auth, plus ways to put real images in it (OCI layouts
// built here, pushed with skopeo) and to make it misbehave (a proxy that cuts a download
// mid-blob, blob files corrupted in its storage).
//
// Needs the Debian packages: docker-registry skopeo apache2-utils openssl.
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { createHash, createSign, randomBytes } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { mkdir, open, readFile, rename, writeFile } from 'node:fs/promises';
import http from 'node:http';
import net from 'node:net';
import { join } from 'node:path';
import { PassThrough, Transform, type Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { promisify } from 'node:util';
import { createGzip } from 'node:zlib';
import tar from 'tar-stream';
import { CompressStream } from 'zstd-napi';
import { makeTmpDir, removeTmpDir } from './tmp.js';

const execFileP = promisify(execFile);

// ---------------------------------------------------------------- running the registry

export interface RegistryAuth {
  /** HTTP Basic auth against an htpasswd file (bcrypt) holding these users. */
  htpasswd?: Record<string, string>;
  /** Token auth: a token server of our own, issuing JWTs for these users. */
  token?: { users: Record<string, string>; /** Grant pull to anonymous requests (default false). */ anonymousPull?: boolean };
}

export interface TokenServer {
  url: string;
  /** Every token request: the user (or undefined when anonymous), the scopes asked, whether granted. */
  requests: Array<{ user?: string; scopes: string[]; service?: string; granted: boolean }>;
}

export interface RunningRegistry {
  /** http://127.0.0.1:PORT */
  url: string;
  /** 127.0.0.1:PORT (a registry name for references) */
  host: string;
  port: number;
  /** The registry's storage root (docker/registry/v2/... below it). */
  dataDir: string;
  tokenServer?: TokenServer;
  /** skopeo --dest-creds / --creds value when auth is on (the first user). */
  creds?: string;
  /** Where the registry stores a blob's bytes. */
  blobPath(digest: string): string;
  /** Flip bytes of a stored blob in place (same size) so it no longer matches its digest. */
  corruptBlob(digest: string): Promise<void>;
  /** The last lines the registry logged (for failure messages). */
  logs(): string;
  stop(): Promise<void>;
}

/** A TCP port that was free a moment ago on 127.0.0.1. */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const port = (srv.address() as net.AddressInfo).port;
      srv.close(() => resolve(port));
    });
  });
}

/** Start docker-registry on 127.0.0.1 with a fresh storage dir; resolves once /v2/ answers. */
export async function startRegistry(opts: { auth?: RegistryAuth } = {}): Promise<RunningRegistry> {
  const dir = await makeTmpDir('registry');
  const cleanups: Array<() => Promise<void>> = [() => removeTmpDir(dir)];
  const cleanup = async () => {
    for (const c of cleanups.reverse()) await c().catch(() => {});
  };
  try {
    const dataDir = join(dir, 'data');
    await mkdir(dataDir);
    const port = await freePort();
    const host = `127.0.0.1:${port}`;
    let authYaml = '';
    let tokenServer: TokenServer | undefined;
    let creds: string | undefined;
    if (opts.auth?.htpasswd) {
      const lines: string[] = [];
      for (const [user, pass] of Object.entries(opts.auth.htpasswd)) {
        const { stdout } = await execFileP('htpasswd', ['-Bbn', user, pass]);
        lines.push(stdout.trim());
      }
      await writeFile(join(dir, 'htpasswd'), lines.join('\n') + '\n');
      authYaml = `auth:\n  htpasswd:\n    realm: tslayer-test\n    path: ${join(dir, 'htpasswd')}\n`;
      const [u, p] = Object.entries(opts.auth.htpasswd)[0]!;
      creds = `${u}:${p}`;
    } else if (opts.auth?.token) {
      const ts = await startTokenServer(dir, opts.auth.token);
      cleanups.push(ts.close);
      tokenServer = ts.server;
      authYaml =
        `auth:\n  token:\n    realm: ${ts.server.url}\n    service: ${ts.service}\n` +
        `    issuer: ${ts.issuer}\n    rootcertbundle: ${ts.certPath}\n`;
      const [u, p] = Object.entries(opts.auth.token.users)[0] ?? [];
      if (u !== undefined) creds = `${u}:${p}`;
    }
    const config =
      'version: 0.1\n' +
      'log:\n  level: error\n  accesslog:\n    disabled: true\n' +
      `storage:\n  filesystem:\n    rootdirectory: ${dataDir}\n  delete:\n    enabled: true\n` +
      '  maintenance:\n    uploadpurging:\n      enabled: false\n' +
      `http:\n  addr: 127.0.0.1:${port}\n  secret: ${randomBytes(16).toString('hex')}\n` +
      authYaml;
    const configPath = join(dir, 'config.yml');
    await writeFile(configPath, config);

    const log: string[] = [];
    const remember = (b: Buffer) => {
      log.push(...b.toString('utf8').split('\n').filter(Boolean));
      if (log.length > 200) log.splice(0, log.length - 200);
    };
    // Run with a clean REGISTRY_* environment: those variables override the config file.
    const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('REGISTRY_')));
    const child = spawn('docker-registry', ['serve', configPath], { stdio: ['ignore', 'pipe', 'pipe'], env });
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    child.stdout!.on('data', remember);
    child.stderr!.on('data', remember);
    cleanups.push(() => stopChild(child, exited));
    await waitForV2(`http://${host}/v2/`, child, () => log.join('\n'));

    const blobPath = (digest: string) => {
      const hex = digest.slice(digest.indexOf(':') + 1);
      return join(dataDir, 'docker/registry/v2/blobs', digest.slice(0, digest.indexOf(':')), hex.slice(0, 2), hex, 'data');
    };
    let stopped = false;
    return {
      url: `http://${host}`,
      host,
      port,
      dataDir,
      ...(tokenServer && { tokenServer }),
      ...(creds !== undefined && { creds }),
      blobPath,
      corruptBlob: (digest) => corruptFile(blobPath(digest)),
      logs: () => log.join('\n'),
      stop: async () => {
        if (stopped) return;
        stopped = true;
        await cleanup();
      },
    };
  } catch (e) {
    await cleanup();
    throw e;
  }
}

async function stopChild(child: ChildProcess, exited: Promise<void>): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  child.kill('SIGTERM');
  const killer = setTimeout(() => child.kill('SIGKILL'), 5000);
  await exited;
  clearTimeout(killer);
}

async function waitForV2(url: string, child: ChildProcess, logs: () => string): Promise<void> {
  const deadline = Date.now() + 15_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`docker-registry exited with ${child.exitCode}:\n${logs()}`);
    const status = await new Promise<number>((resolve) => {
      const req = http.get(url, (res) => {
        res.resume();
        resolve(res.statusCode ?? 0);
      });
      req.on('error', () => resolve(0));
    });
    if (status === 200 || status === 401) return;
    if (Date.now() > deadline) throw new Error(`docker-registry did not answer ${url} within 15 s:\n${logs()}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

async function corruptFile(path: string): Promise<void> {
  const fh = await open(path, 'r+');
  try {
    const { size } = await fh.stat();
    const at = Math.floor(size / 2);
    const b = Buffer.alloc(Math.min(16, size - at));
    await fh.read(b, 0, b.length, at);
    for (let i = 0; i < b.length; i++) b[i] = b[i]! ^ 0xff;
    await fh.write(b, 0, b.length, at);
  } finally {
    await fh.close();
  }
}

// ---------------------------------------------------------------- token server

const b64url = (b: Buffer | string) => Buffer.from(b).toString('base64url');

async function startTokenServer(
  dir: string,
  opts: { users: Record<string, string>; anonymousPull?: boolean },
): Promise<{ server: TokenServer; service: string; issuer: string; certPath: string; close: () => Promise<void> }> {
  const keyPath = join(dir, 'token-key.pem');
  const certPath = join(dir, 'token-cert.pem');
  await execFileP('openssl', [
    'req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', keyPath, '-out', certPath,
    '-days', '2', '-subj', '/CN=tslayer-test-token-issuer',
  ]);
  const key = await readFile(keyPath, 'utf8');
  const certPem = await readFile(certPath, 'utf8');
  const certDer = Buffer.from(certPem.replace(/-----[^-]+-----/g, '').replace(/\s+/g, ''), 'base64');
  const service = 'tslayer-test-registry';
  const issuer = 'tslayer-test-issuer';
  const requests: TokenServer['requests'] = [];

  const sign = (claims: object) => {
    // The registry trusts the key through the x5c chain, checked against rootcertbundle.
    const header = b64url(JSON.stringify({ alg: 'RS256', typ: 'JWT', x5c: [certDer.toString('base64')] }));
    const payload = b64url(JSON.stringify(claims));
    const sig = createSign('RSA-SHA256').update(`${header}.${payload}`).sign(key);
    return `${header}.${payload}.${b64url(sig)}`;
  };

  const srv = http.createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://x');
    const scopes = url.searchParams.getAll('scope').flatMap((s) => s.split(' ')).filter(Boolean);
    let user: string | undefined;
    const authz = req.headers.authorization;
    if (authz?.startsWith('Basic ')) {
      const plain = Buffer.from(authz.slice(6), 'base64').toString('utf8');
      const i = plain.indexOf(':');
      const [u, p] = [plain.slice(0, i), plain.slice(i + 1)];
      if (opts.users[u] === undefined || opts.users[u] !== p) {
        requests.push({ user: u, scopes, service: url.searchParams.get('service') ?? undefined, granted: false });
        res.writeHead(401, { 'Content-Type': 'application/json' });
        res.end(JSON.stringify({ errors: [{ code: 'UNAUTHORIZED', message: 'bad credentials' }] }));
        return;
      }
      user = u;
    }
    const access = scopes.flatMap((s) => {
      const [type, ...rest] = s.split(':');
      const actions = (rest.pop() ?? '').split(',').filter(Boolean);
      const name = rest.join(':');
      const allowed = user !== undefined ? actions : opts.anonymousPull ? actions.filter((a) => a === 'pull') : [];
      return allowed.length ? [{ type, name, actions: allowed }] : [];
    });
    requests.push({ ...(user !== undefined && { user }), scopes, service: url.searchParams.get('service') ?? undefined, granted: true });
    const now = Math.floor(Date.now() / 1000);
    const token = sign({
      iss: issuer, sub: user ?? '', aud: service, exp: now + 300, nbf: now - 10, iat: now,
      jti: randomBytes(8).toString('hex'), access,
    });
    res.writeHead(200, { 'Content-Type': 'application/json' });
    res.end(JSON.stringify({ token, access_token: token, expires_in: 300, issued_at: new Date().toISOString() }));
  });
  await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', resolve));
  const port = (srv.address() as net.AddressInfo).port;
  return {
    server: { url: `http://127.0.0.1:${port}/token`, requests },
    service,
    issuer,
    certPath,
    close: () =>
      new Promise<void>((resolve) => {
        srv.closeAllConnections();
        srv.close(() => resolve());
      }),
  };
}

// ---------------------------------------------------------------- images: OCI layouts built here

export type LayerFiles = Record<string, string | Buffer>;

export interface LayerSpec {
  files: LayerFiles;
  compression?: 'gzip' | 'zstd' | 'none';
}

export interface PlatformSpec {
  os: string;
  architecture: string;
  variant?: string;
}

export interface BlobInfo {
  mediaType: string;
  digest: string;
  size: number;
}

export interface BuiltImage {
  manifest: BlobInfo;
  config: BlobInfo;
  layers: Array<BlobInfo & { diffId: string }>;
  platform: PlatformSpec;
}

export interface BuiltLayout {
  dir: string;
  tag: string;
  /** The descriptor index.json holds for `tag`: a manifest, or an index for multi-arch. */
  top: BlobInfo;
  images: BuiltImage[];
}

const OCI = {
  manifest: 'application/vnd.oci.image.manifest.v1+json',
  index: 'application/vnd.oci.image.index.v1+json',
  config: 'application/vnd.oci.image.config.v1+json',
  layer: 'application/vnd.oci.image.layer.v1.tar',
};

/** Write an OCI image layout in `dir` holding one image with real tar layers, tagged `tag`. */
export async function buildImageLayout(
  dir: string,
  layers: LayerSpec[],
  opts: { tag?: string; platform?: PlatformSpec } = {},
): Promise<BuiltLayout> {
  const tag = opts.tag ?? 'latest';
  await initLayout(dir);
  const image = await writeImage(dir, layers, opts.platform ?? { os: 'linux', architecture: 'amd64' });
  await writeIndexJson(dir, { ...image.manifest, tag });
  return { dir, tag, top: image.manifest, images: [image] };
}

/** Write an OCI layout whose `tag` names an image index over one image per platform. */
export async function buildMultiArchLayout(
  dir: string,
  images: Array<{ platform: PlatformSpec; layers: LayerSpec[] }>,
  opts: { tag?: string } = {},
): Promise<BuiltLayout> {
  const tag = opts.tag ?? 'latest';
  await initLayout(dir);
  const built: BuiltImage[] = [];
  for (const img of images) built.push(await writeImage(dir, img.layers, img.platform));
  const index = {
    schemaVersion: 2,
    mediaType: OCI.index,
    manifests: built.map((b) => ({ ...b.manifest, platform: b.platform })),
  };
  const top = await writeBlob(dir, OCI.index, Buffer.from(JSON.stringify(index)));
  await writeIndexJson(dir, { ...top, tag });
  return { dir, tag, top, images: built };
}

async function initLayout(dir: string): Promise<void> {
  await mkdir(join(dir, 'blobs', 'sha256'), { recursive: true });
  await writeFile(join(dir, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }));
}

async function writeIndexJson(dir: string, top: BlobInfo & { tag: string }): Promise<void> {
  const index = {
    schemaVersion: 2,
    manifests: [{
      mediaType: top.mediaType, digest: top.digest, size: top.size,
      annotations: { 'org.opencontainers.image.ref.name': top.tag },
    }],
  };
  await writeFile(join(dir, 'index.json'), JSON.stringify(index));
}

async function writeImage(dir: string, layers: LayerSpec[], platform: PlatformSpec): Promise<BuiltImage> {
  const built: Array<BlobInfo & { diffId: string }> = [];
  for (const l of layers) built.push(await writeLayer(dir, l));
  const config = {
    architecture: platform.architecture,
    os: platform.os,
    ...(platform.variant && { variant: platform.variant }),
    created: '2024-01-01T00:00:00Z',
    config: { Env: ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'] },
    rootfs: { type: 'layers', diff_ids: built.map((l) => l.diffId) },
    history: built.map((_, i) => ({ created: '2024-01-01T00:00:00Z', created_by: `test layer ${i}` })),
  };
  const configBlob = await writeBlob(dir, OCI.config, Buffer.from(JSON.stringify(config)));
  const manifest = {
    schemaVersion: 2,
    mediaType: OCI.manifest,
    config: configBlob,
    layers: built.map(({ mediaType, digest, size }) => ({ mediaType, digest, size })),
  };
  const manifestBlob = await writeBlob(dir, OCI.manifest, Buffer.from(JSON.stringify(manifest)));
  return { manifest: manifestBlob, config: configBlob, layers: built, platform };
}

async function writeBlob(dir: string, mediaType: string, data: Buffer): Promise<BlobInfo> {
  const hex = createHash('sha256').update(data).digest('hex');
  await writeFile(join(dir, 'blobs', 'sha256', hex), data);
  return { mediaType, digest: `sha256:${hex}`, size: data.length };
}

/** A tar of `files` (parents made implicitly), compressed, streamed to the layout with its digests. */
async function writeLayer(dir: string, spec: LayerSpec): Promise<BlobInfo & { diffId: string }> {
  const compression = spec.compression ?? 'gzip';
  const pack = tar.pack();
  const diff = createHash('sha256');
  const blob = createHash('sha256');
  let size = 0;
  const tmp = join(dir, 'blobs', `.tmp-${randomBytes(6).toString('hex')}`);
  const tap = (h: ReturnType<typeof createHash>, count = false) =>
    new Transform({
      transform(chunk: Buffer, _e, cb) {
        h.update(chunk);
        if (count) size += chunk.length;
        cb(null, chunk);
      },
    });
  const compressor: Transform | PassThrough =
    compression === 'gzip' ? createGzip() : compression === 'zstd' ? (new CompressStream() as unknown as Transform) : new PassThrough();
  const done = pipeline(pack, tap(diff), compressor, tap(blob, true), createWriteStream(tmp));
  const dirs = new Set<string>();
  const mtime = new Date('2024-01-01T00:00:00Z');
  for (const [name, content] of Object.entries(spec.files)) {
    const parts = name.split('/');
    for (let i = 1; i < parts.length; i++) {
      const d = parts.slice(0, i).join('/');
      if (!dirs.has(d)) {
        dirs.add(d);
        await entry(pack, { name: `${d}/`, type: 'directory', mode: 0o755, mtime });
      }
    }
    await entry(pack, { name, type: 'file', mode: 0o644, mtime }, Buffer.from(content));
  }
  pack.finalize();
  await done;
  const hex = blob.digest('hex');
  await rename(tmp, join(dir, 'blobs', 'sha256', hex));
  const mediaType = compression === 'none' ? OCI.layer : `${OCI.layer}+${compression}`;
  return { mediaType, digest: `sha256:${hex}`, size, diffId: `sha256:${diff.digest('hex')}` };
}

function entry(pack: tar.Pack, header: Partial<tar.Header> & { name: string }, data?: Buffer): Promise<void> {
  return new Promise((resolve, reject) => pack.entry(header, data ?? Buffer.alloc(0), (err) => (err ? reject(err) : resolve())));
}

// ---------------------------------------------------------------- skopeo

/** skopeo without a signature policy file (the registries here are test registries). */
export async function skopeo(args: string[], opts: { timeoutMs?: number } = {}): Promise<string> {
  try {
    const { stdout } = await execFileP('skopeo', ['--insecure-policy', ...args], {
      timeout: opts.timeoutMs ?? 60_000,
      maxBuffer: 16 << 20,
    });
    return stdout;
  } catch (e) {
    const err = e as { stderr?: string; message: string };
    throw new Error(`skopeo ${args.join(' ')} failed: ${err.stderr || err.message}`);
  }
}

/**
 * Copy an OCI layout's tagged image (or index, with all: true) to `dest`
 * (`127.0.0.1:PORT/name:tag`). format 'v2s2' converts to Docker schema 2 media types.
 */
export async function pushLayout(
  layoutDir: string,
  dest: string,
  opts: { tag?: string; all?: boolean; format?: 'oci' | 'v2s2'; creds?: string } = {},
): Promise<void> {
  const args = ['copy', '--dest-tls-verify=false', '--quiet'];
  if (opts.all) args.push('--all');
  // --preserve-digests pushes the layout's blobs as they are (skopeo would gzip uncompressed
  // layers); a format conversion changes the manifest's digest, so it cannot go with it.
  if (opts.format) args.push('--format', opts.format);
  else args.push('--preserve-digests');
  if (opts.creds) args.push('--dest-creds', opts.creds);
  args.push(`oci:${layoutDir}:${opts.tag ?? 'latest'}`, `docker://${dest}`);
  await skopeo(args);
}

/** `skopeo inspect` of a registry image: the parsed JSON (raw: the manifest itself). */
export async function skopeoInspect(ref: string, opts: { raw?: boolean; config?: boolean; creds?: string } = {}): Promise<any> {
  const args = ['inspect', '--tls-verify=false'];
  if (opts.raw) args.push('--raw');
  if (opts.config) args.push('--config');
  if (opts.creds) args.push('--creds', opts.creds);
  args.push(`docker://${ref}`);
  return JSON.parse(await skopeo(args));
}

// ---------------------------------------------------------------- fault injection

export interface ProxiedRequest {
  method: string;
  url: string;
  /** The Host the client addressed (127.0.0.1:PORT, or localhost:PORT after a redirect). */
  host: string;
  headers: http.IncomingHttpHeaders;
  /** What the proxy did to this request, if anything. */
  fault?: 'cut' | 'failed' | 'redirected' | 'upload-cut';
  /** Kept for old callers: whether the response body was cut. */
  cut: boolean;
}

export interface CuttingProxy {
  url: string;
  host: string;
  port: number;
  /** Every request that went through, in order. */
  requests: ProxiedRequest[];
  close(): Promise<void>;
}

export interface ProxyFaults {
  /** Cut the response body of a matching request after this many bytes (0: after the headers). */
  cutAfterBytes?: number;
  /** Answer a matching request with this status (e.g. 503) instead of forwarding it. */
  failWith?: number;
  /** Answer a matching GET with 307 to the same path under /storage on localhost:PORT (another host). */
  redirect?: boolean;
  /** Forward only this many bytes of a matching request's body, then drop both connections. */
  cutRequestAfterBytes?: number;
  /** How many matching requests get the fault (default 1). */
  times?: number;
  /** Which requests are affected (default: GET of a blob by digest). */
  match?: (method: string, url: string) => boolean;
}

const STORAGE = '/storage';

/**
 * An HTTP proxy on 127.0.0.1 in front of `target` (host:port) that forwards everything and
 * records each request, but plays one fault on the first `times` matching requests: a
 * response body cut after N bytes (the default use: a download broken mid-blob), an error
 * status, a redirect to "storage" on another host name, or a request body cut after N bytes.
 * The redirected storage request is served from the registry with the Authorization of the
 * request that was redirected (a real storage URL carries its own signature instead).
 */
export async function startCuttingProxy(target: string, opts: ProxyFaults): Promise<CuttingProxy> {
  const [thost, tport] = [target.slice(0, target.lastIndexOf(':')), Number(target.slice(target.lastIndexOf(':') + 1))];
  const match = opts.match ?? ((m, u) => m === 'GET' && /\/blobs\/sha256:[a-f0-9]{64}/.test(u));
  let left = opts.times ?? 1;
  const requests: ProxiedRequest[] = [];
  const redirectedAuth = new Map<string, string | undefined>();
  let port = 0;

  const forward = (req: http.IncomingMessage, res: http.ServerResponse, rec: ProxiedRequest, path: string, headers: http.IncomingHttpHeaders, cutBody: number | undefined) => {
    const up = http.request({ host: thost, port: tport, method: req.method, path, headers }, (upRes) => {
      res.writeHead(upRes.statusCode ?? 502, upRes.headers);
      const cut = opts.cutAfterBytes;
      if (rec.fault !== 'cut' || cut === undefined || (upRes.statusCode !== 200 && upRes.statusCode !== 206)) {
        upRes.pipe(res);
        return;
      }
      if (cut <= 0) {
        // Headers only, then drop the connection.
        upRes.destroy();
        res.flushHeaders();
        setImmediate(() => res.socket?.destroy());
        return;
      }
      let sent = 0;
      upRes.on('data', (chunk: Buffer) => {
        if (sent >= cut) return;
        const part = chunk.subarray(0, cut - sent);
        sent += part.length;
        if (sent < cut) {
          res.write(part);
          return;
        }
        upRes.destroy();
        // Flush what we promised, then drop the connection mid-body.
        res.write(part, () => res.socket?.destroy());
      });
      upRes.on('end', () => res.end());
    });
    up.on('error', () => res.destroy());
    if (cutBody === undefined) {
      req.pipe(up);
      return;
    }
    let n = 0;
    req.on('data', (chunk: Buffer) => {
      if (n >= cutBody) return;
      const part = chunk.subarray(0, cutBody - n);
      n += part.length;
      if (n < cutBody) {
        up.write(part);
        return;
      }
      // The registry gets part of the body, then both sides lose their connection.
      up.write(part, () => {
        setTimeout(() => {
          up.destroy();
          req.socket.destroy();
        }, 50);
      });
    });
  };

  const srv = http.createServer((req, res) => {
    const rec: ProxiedRequest = {
      method: req.method ?? 'GET', url: req.url ?? '/', host: req.headers.host ?? '', headers: req.headers, cut: false,
    };
    requests.push(rec);
    if (rec.url.startsWith(`${STORAGE}/`)) {
      const path = rec.url.slice(STORAGE.length);
      const headers = { ...req.headers, host: `127.0.0.1:${port}` };
      const auth = redirectedAuth.get(path);
      if (auth) headers.authorization = auth;
      forward(req, res, rec, path, headers, undefined);
      return;
    }
    const hit = left > 0 && match(rec.method, rec.url);
    if (hit) left--;
    if (hit && opts.failWith !== undefined) {
      rec.fault = 'failed';
      req.resume();
      res.writeHead(opts.failWith, { 'Content-Type': 'application/json' });
      res.end(JSON.stringify({ errors: [{ code: 'UNAVAILABLE', message: 'injected failure' }] }));
      return;
    }
    if (hit && opts.redirect) {
      rec.fault = 'redirected';
      redirectedAuth.set(rec.url, req.headers.authorization);
      req.resume();
      res.writeHead(307, { Location: `http://localhost:${port}${STORAGE}${rec.url}` });
      res.end();
      return;
    }
    if (hit && opts.cutRequestAfterBytes !== undefined) rec.fault = 'upload-cut';
    else if (hit && opts.cutAfterBytes !== undefined) {
      rec.fault = 'cut';
      rec.cut = true;
    }
    forward(req, res, rec, rec.url, req.headers, rec.fault === 'upload-cut' ? opts.cutRequestAfterBytes : undefined);
  });
  await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', resolve));
  port = (srv.address() as net.AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}`,
    host: `127.0.0.1:${port}`,
    port,
    requests,
    close: () =>
      new Promise<void>((resolve) => {
        srv.closeAllConnections();
        srv.close(() => resolve());
      }),
  };
}

/** Read a whole stream (tests only: blobs here are small). */
export async function collect(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of stream) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}
