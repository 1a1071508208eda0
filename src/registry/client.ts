// A client of the OCI distribution API (the registry's /v2/ endpoints), for pull and push.
// Library code: no terminal, no process exit; errors are TslayerErrors naming the ref.
import { createHash } from 'node:crypto';
import { Readable, Transform, type TransformCallback } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { TslayerError } from '../errors.js';
import type { Descriptor } from '../image/descriptor.js';
import { digestAlgorithm, isDigest, type Digest } from '../image/digest.js';
import { MANIFEST_ACCEPT, MediaType } from '../image/mediatype.js';
import { formatReference, registryHost, type Reference } from '../image/reference.js';
import { Authenticator, pullScope, pushScope } from './auth.js';
import { BlobStream, type FetchBlobOptions } from './blob.js';
import type { CredentialStore } from './credentials.js';
import { readBody, Transport, type Body, type HttpResponse } from './transport.js';

export interface RegistryOptions {
  /** Use plain HTTP for every registry (loopback registries always get plain HTTP). */
  plainHttp?: boolean;
  /** Do not verify TLS certificates. */
  insecure?: boolean;
  credentials?: CredentialStore;
  userAgent?: string;
  /** Retries of a failed request or broken download (default 3). */
  retries?: number;
}

export interface PushBlobOptions {
  /** Another repository of the same registry that may hold the blob: try a cross-repo mount first. */
  mountFrom?: string;
  /** Upload in PATCH chunks of this many bytes instead of one PUT. */
  chunkSize?: number;
}

/** Manifests and indexes are small documents; anything bigger is refused, never buffered. */
export const MANIFEST_LIMIT = 4 << 20;

export class RegistryClient {
  private readonly transport: Transport;
  private readonly auth: Authenticator;
  private readonly retries: number;

  constructor(opts: RegistryOptions = {}) {
    this.transport = new Transport(opts);
    this.auth = new Authenticator(this.transport, opts.credentials);
    this.retries = opts.retries ?? 3;
  }

  /** GET the manifest (or index) a ref names, by its digest if it has one, else by tag. */
  async resolve(ref: Reference): Promise<{ descriptor: Descriptor; body: Buffer }> {
    const target = ref.digest ?? ref.tag ?? 'latest';
    const { mediaType, body, digest } = await this.fetchManifest(ref, target);
    return { descriptor: { mediaType, digest, size: body.length }, body };
  }

  /** GET a manifest by digest, verified against it. */
  async getManifest(ref: Reference, digest: Digest): Promise<{ mediaType: string; body: Buffer }> {
    const { mediaType, body } = await this.fetchManifest(ref, digest);
    return { mediaType, body };
  }

  /**
   * Stream a blob, verified against desc.digest and desc.size (the stream errors with
   * EINTEGRITY / EBADSIZE instead of ending). Broken connections are resumed with Range.
   */
  fetchBlob(ref: Reference, desc: Descriptor, opts?: FetchBlobOptions): Readable {
    const source = `${ref.registry}/${ref.repository}`;
    return new BlobStream({
      desc,
      source,
      retries: this.retries,
      backoff: (n) => this.transport.backoff(n),
      options: opts,
      open: async (offset) => {
        const headers: Record<string, string> = {};
        if (offset > 0) headers['Range'] = `bytes=${offset}-`;
        const res = await this.send(ref, [pullScope(ref.repository)], {
          method: 'GET',
          path: `blobs/${desc.digest}`,
          headers,
        });
        if (res.status === 200 || res.status === 206 || res.status === 416) return res;
        throw await this.httpError(res, `blob ${desc.digest} of ${source}`);
      },
    });
  }

  /** Does the repository hold this blob? */
  async hasBlob(ref: Reference, digest: Digest): Promise<boolean> {
    return (await this.blobSize(ref, digest)) !== undefined;
  }

  /**
   * Upload a blob unless the repository already has it. `open(offset)` returns the blob's
   * bytes from `offset` on; it is called again when an upload has to continue or restart.
   */
  async pushBlob(
    ref: Reference,
    desc: Descriptor,
    open: (offset: number) => Readable,
    opts: PushBlobOptions = {},
  ): Promise<void> {
    const size = await this.blobSize(ref, desc.digest);
    if (size !== undefined) {
      if (size === desc.size || size < 0) return; // -1: present, size not given
      throw new TslayerError(
        'EBADSIZE',
        `${ref.registry}/${ref.repository} has blob ${desc.digest} with ${size} bytes, descriptor says ${desc.size}`,
      );
    }
    const from = opts.mountFrom && opts.mountFrom !== ref.repository ? opts.mountFrom : undefined;
    const scopes = from ? [pushScope(ref.repository), pullScope(from)] : [pushScope(ref.repository)];
    for (let attempt = 0; ; attempt++) {
      let location = await this.startUpload(ref, desc, scopes, from);
      if (location === undefined) return; // mounted
      try {
        if (opts.chunkSize !== undefined) location = await this.uploadChunks(ref, desc, location, open, opts.chunkSize);
        await this.completeUpload(ref, desc, location, opts.chunkSize !== undefined ? undefined : open);
        return;
      } catch (e) {
        // A monolithic PUT that broke cannot be continued, and a chunked upload whose session
        // the registry dropped cannot either: start a new upload session.
        const restart = e instanceof SessionLost || (opts.chunkSize === undefined && e instanceof TslayerError && e.code === 'UNAVAILABLE');
        if (restart && attempt < this.retries) {
          await sleep(this.transport.backoff(attempt + 1));
          continue;
        }
        throw e;
      }
    }
  }

  /** PUT a manifest or index under the ref's tag (or its digest when it has no tag). Returns its digest. */
  async putManifest(ref: Reference, mediaType: string, body: Buffer): Promise<Digest> {
    if (body.length > MANIFEST_LIMIT) {
      throw new TslayerError('EBADSIZE', `manifest for ${formatReference(ref)} is ${body.length} bytes, more than ${MANIFEST_LIMIT}`);
    }
    const digest = sha256(body);
    if (ref.digest && ref.digest !== digest && digestOf(body, ref.digest) !== ref.digest) {
      throw new TslayerError('EINTEGRITY', `manifest for ${formatReference(ref)}: digest mismatch: expected ${ref.digest}, got ${digest}`);
    }
    const target = ref.tag ?? ref.digest ?? digest;
    const res = await this.send(ref, [pushScope(ref.repository)], {
      method: 'PUT',
      path: `manifests/${target}`,
      headers: { 'Content-Type': mediaType },
      body,
    });
    if (res.status !== 201 && res.status !== 200) throw await this.httpError(res, `manifest ${formatReference(ref)}`);
    res.body.resume();
    const echoed = res.headers['docker-content-digest'];
    if (typeof echoed === 'string' && isDigest(echoed) && digestAlgorithm(echoed) === 'sha256' && echoed !== digest) {
      throw new TslayerError('EINTEGRITY', `${ref.registry} stored manifest ${formatReference(ref)} as ${echoed}, expected ${digest}`);
    }
    return digest;
  }

  /** Close idle connections. */
  close(): void {
    this.transport.close();
  }

  // ---- manifests ----

  private async fetchManifest(ref: Reference, target: string): Promise<{ mediaType: string; body: Buffer; digest: Digest }> {
    const name = formatReference(ref);
    const byDigest = isDigest(target) ? target : undefined;
    for (let attempt = 0; ; attempt++) {
      const res = await this.send(ref, [pullScope(ref.repository)], {
        method: 'GET',
        path: `manifests/${target}`,
        headers: { Accept: MANIFEST_ACCEPT },
      });
      if (res.status === 404) {
        res.body.resume();
        throw new TslayerError('NOT_FOUND', `manifest for ${name} not found in ${ref.registry}`);
      }
      if (res.status !== 200) throw await this.httpError(res, `manifest ${name}`);
      let body: Buffer;
      try {
        body = await readBody(res.body, MANIFEST_LIMIT, `manifest ${name} from ${ref.registry}`);
      } catch (e) {
        // The connection broke while reading a small document: just ask again.
        if (!(e instanceof TslayerError) && attempt < this.retries) {
          await sleep(this.transport.backoff(attempt + 1));
          continue;
        }
        throw e;
      }
      const digest = sha256(body);
      if (byDigest && digestOf(body, byDigest) !== byDigest) {
        throw new TslayerError('EINTEGRITY', `manifest ${name}: digest mismatch: expected ${byDigest}, got ${digestOf(body, byDigest)}`);
      }
      const header = res.headers['docker-content-digest'];
      if (!byDigest && typeof header === 'string' && isDigest(header) && digestOf(body, header) !== header) {
        throw new TslayerError('EINTEGRITY', `manifest ${name}: registry says ${header}, body is ${digestOf(body, header)}`);
      }
      const mediaType = manifestMediaType(res.headers['content-type'], body);
      return { mediaType, body, digest: byDigest && digestAlgorithm(byDigest) !== 'sha256' ? byDigest : digest };
    }
  }

  // ---- blobs ----

  private async blobSize(ref: Reference, digest: Digest): Promise<number | undefined> {
    const res = await this.send(ref, [pullScope(ref.repository)], { method: 'HEAD', path: `blobs/${digest}` });
    res.body.resume();
    if (res.status === 404) return undefined;
    if (res.status !== 200) throw await this.httpError(res, `blob ${digest} of ${ref.registry}/${ref.repository}`);
    const n = Number(res.headers['content-length']);
    return Number.isFinite(n) ? n : -1;
  }

  /** POST to open an upload session (or mount). Returns the session URL, or undefined when mounted. */
  private async startUpload(ref: Reference, desc: Descriptor, scopes: string[], from?: string): Promise<URL | undefined> {
    const query = from ? `?mount=${encodeURIComponent(desc.digest)}&from=${encodeURIComponent(from)}` : '';
    const res = await this.send(ref, scopes, {
      method: 'POST',
      path: `blobs/uploads/${query}`,
      headers: { 'Content-Length': '0' },
    });
    if (res.status === 201 && from) {
      res.body.resume();
      return undefined;
    }
    if (res.status !== 202) throw await this.httpError(res, `upload of blob ${desc.digest} to ${ref.registry}/${ref.repository}`);
    res.body.resume();
    return this.location(res, ref);
  }

  private location(res: HttpResponse, ref: Reference): URL {
    const loc = res.headers.location;
    if (!loc) throw new TslayerError('INTERNAL', `${ref.registry} answered an upload request without a Location`);
    return new URL(loc, res.url);
  }

  /** PATCH the blob in chunks, resuming from what the registry reports after a broken one. */
  private async uploadChunks(
    ref: Reference,
    desc: Descriptor,
    start: URL,
    open: (offset: number) => Readable,
    chunkSize: number,
  ): Promise<URL> {
    if (!Number.isSafeInteger(chunkSize) || chunkSize <= 0) {
      throw new TslayerError('INVALID_ARGUMENT', `chunk size ${chunkSize} must be a positive integer`);
    }
    let location = start;
    let offset = 0;
    let failures = 0;
    while (offset < desc.size) {
      const len = Math.min(chunkSize, desc.size - offset);
      const from = offset;
      try {
        const res = await this.send(ref, [pushScope(ref.repository)], {
          url: location,
          method: 'PATCH',
          headers: {
            'Content-Type': 'application/octet-stream',
            'Content-Range': `${from}-${from + len - 1}`,
            'Content-Length': String(len),
          },
          body: () => take(open(from), len),
          retries: 0,
        });
        if (res.status !== 202) throw await this.httpError(res, `upload of blob ${desc.digest} to ${ref.registry}/${ref.repository}`);
        res.body.resume();
        location = this.location(res, ref);
        offset = uploadedUpTo(res) ?? from + len;
        failures = 0;
      } catch (e) {
        if (!(e instanceof TslayerError && e.code === 'UNAVAILABLE') || ++failures > this.retries) throw e;
        await sleep(this.transport.backoff(failures));
        // Ask the registry how much of the upload it kept, and go on from there. A registry
        // may instead refuse the session (distribution does: its state token no longer
        // matches what it stored); then the upload starts over.
        const status = await this.send(ref, [pushScope(ref.repository)], { url: location, method: 'GET' });
        if (status.status !== 204) throw new SessionLost(await this.httpError(status, `upload status of blob ${desc.digest}`));
        status.body.resume();
        location = this.location(status, ref);
        offset = uploadedUpTo(status) ?? 0;
      }
    }
    return location;
  }

  /** PUT ?digest= to close the session, with the whole blob as body for a monolithic upload. */
  private async completeUpload(
    ref: Reference,
    desc: Descriptor,
    location: URL,
    open?: (offset: number) => Readable,
  ): Promise<void> {
    const url = new URL(location);
    url.searchParams.set('digest', desc.digest);
    const res = await this.send(ref, [pushScope(ref.repository)], {
      url,
      method: 'PUT',
      headers: {
        'Content-Type': 'application/octet-stream',
        'Content-Length': String(open ? desc.size : 0),
      },
      ...(open && { body: () => take(open(0), desc.size) }),
      retries: 0,
    });
    if (res.status !== 201 && res.status !== 204) {
      throw await this.httpError(res, `upload of blob ${desc.digest} to ${ref.registry}/${ref.repository}`);
    }
    res.body.resume();
  }

  // ---- requests ----

  /**
   * One authenticated request to the registry of `ref`: the known Authorization goes up front;
   * a 401 is answered once (token fetch or Basic) and the request sent again.
   */
  private async send(
    ref: Reference,
    scopes: string[],
    req: { method: string; path?: string; url?: URL; headers?: Record<string, string>; body?: Body; retries?: number },
  ): Promise<HttpResponse> {
    const host = registryHost(ref.registry);
    const url = req.url ?? new URL(`/v2/${ref.repository}/${req.path}`, this.transport.baseUrl(host));
    let authorization = await this.auth.header(ref.registry, host, ref.repository, scopes);
    const attempt = () =>
      this.transport.send({
        method: req.method,
        url,
        headers: { ...req.headers, ...(authorization && { Authorization: authorization }) },
        ...(req.body !== undefined && { body: req.body }),
        ...(req.retries !== undefined && { retries: req.retries }),
        registry: ref.registry,
      });
    let res = await attempt();
    if (res.status === 401) {
      res.body.resume();
      const www = res.headers['www-authenticate'];
      authorization = await this.auth.onChallenge(ref.registry, host, ref.repository, scopes, www, authorization);
      res = await attempt();
      if (res.status === 401) {
        const detail = await errorDetail(res);
        const user = await this.auth.username(ref.registry, ref.repository);
        const who = user !== undefined ? `user "${user}"` : 'anonymous access (no credentials found)';
        const how = authorization?.startsWith('Basic ') ? 'rejected the credentials of' : 'refused the token it issued to';
        throw new TslayerError(
          'UNAUTHORIZED',
          `unauthorized: ${ref.registry} ${how} ${who} for ${req.method} ${ref.repository}${detail}`,
        );
      }
    }
    if (res.status === 403) {
      const detail = await errorDetail(res);
      throw new TslayerError('UNAUTHORIZED', `unauthorized: ${ref.registry} denied ${req.method} on ${ref.repository}${detail}`);
    }
    return res;
  }

  /** The error for an answer we did not expect, with the registry's own error codes. */
  private async httpError(res: HttpResponse, what: string): Promise<TslayerError> {
    const detail = await errorDetail(res);
    const msg = `${what}: HTTP ${res.status}${detail}`;
    if (res.status === 404) return new TslayerError('NOT_FOUND', msg);
    if (res.status === 401 || res.status === 403) return new TslayerError('UNAUTHORIZED', `unauthorized: ${msg}`);
    if (res.status >= 500 || res.status === 429) return new TslayerError('UNAVAILABLE', msg);
    if (/DIGEST_INVALID|SIZE_INVALID/.test(detail)) return new TslayerError('EINTEGRITY', msg);
    if (res.status === 400) return new TslayerError('INVALID_ARGUMENT', msg);
    return new TslayerError('FAILED_PRECONDITION', msg);
  }
}

// ---- helpers ----

/** An upload session the registry no longer accepts after a broken chunk; `cause` says why. */
class SessionLost extends TslayerError {
  constructor(cause: TslayerError) {
    super('UNAVAILABLE', `${cause.message} (upload session lost)`, { cause });
  }
}

function sha256(body: Buffer): Digest {
  return `sha256:${createHash('sha256').update(body).digest('hex')}`;
}

/** Digest of `body` in the algorithm of `like`. */
function digestOf(body: Buffer, like: Digest): Digest {
  const alg = digestAlgorithm(like);
  return `${alg}:${createHash(alg).update(body).digest('hex')}` as Digest;
}

/** The media type of a manifest: Content-Type, else the document's own mediaType, else its shape. */
function manifestMediaType(contentType: string | undefined, body: Buffer): string {
  const ct = contentType?.split(';')[0]?.trim();
  if (ct && ct !== 'application/json' && ct !== 'text/plain' && ct !== 'application/octet-stream') return ct;
  try {
    const doc = JSON.parse(body.toString('utf8')) as { mediaType?: unknown; manifests?: unknown; config?: unknown };
    if (typeof doc.mediaType === 'string') return doc.mediaType;
    if (Array.isArray(doc.manifests)) return MediaType.OciIndex;
    if (doc.config) return MediaType.OciManifest;
  } catch {
    // not JSON: fall through to what the server said
  }
  return ct ?? 'application/octet-stream';
}

/** Next offset from an upload's `Range: 0-N` header (N is the last byte stored). */
function uploadedUpTo(res: HttpResponse): number | undefined {
  const m = /^(?:bytes=)?0-(\d+)$/.exec(String(res.headers.range ?? ''));
  return m ? Number(m[1]) + 1 : undefined;
}

/** The first `n` bytes of a stream, then end (and close the source). */
function take(src: Readable, n: number): Readable {
  let left = n;
  const t = new Transform({
    transform(chunk: Buffer, _enc, cb: TransformCallback) {
      if (left <= 0) return cb();
      const b = chunk.length > left ? chunk.subarray(0, left) : chunk;
      left -= b.length;
      cb(null, b);
      if (left === 0) {
        src.unpipe(t);
        src.destroy();
        t.end();
      }
    },
    flush(cb) {
      cb(left > 0 ? new TslayerError('EBADSIZE', `source stream ended ${left} bytes short of ${n}`) : null);
    },
  });
  src.on('error', (e) => t.destroy(e));
  if (n === 0) {
    src.destroy();
    t.end();
    return t;
  }
  return src.pipe(t);
}

/** `: CODE message` from a distribution error body, if the registry sent one. */
async function errorDetail(res: HttpResponse): Promise<string> {
  try {
    const body = await readBody(res.body, 64 << 10, 'error body');
    const doc = JSON.parse(body.toString('utf8')) as { errors?: Array<{ code?: string; message?: string }> };
    const parts = (doc.errors ?? []).map((e) => [e.code, e.message].filter(Boolean).join(' '));
    return parts.length ? `: ${parts.join('; ')}` : '';
  } catch {
    return '';
  }
}
