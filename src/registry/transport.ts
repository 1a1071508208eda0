// HTTP for the registry client: scheme choice, redirects, retries with backoff.
//
// - Registries on localhost / 127.0.0.0/8 / ::1, or any with `plainHttp`, are spoken to over
//   plain HTTP (as docker does for its default insecure loopback registries); all others HTTPS.
// - `insecure` skips TLS certificate verification.
// - Redirects are followed (blob GETs are often sent to a storage URL); Authorization is
//   dropped when the redirect leaves the host, since storage URLs carry their own signature.
// - Connection errors and 5xx/429 answers are retried with exponential backoff when the
//   request body can be sent again (a Buffer, or a factory that reopens the stream).
import http, { type IncomingHttpHeaders, type IncomingMessage } from 'node:http';
import https from 'node:https';
import type { Readable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { TslayerError } from '../errors.js';

export interface TransportOptions {
  plainHttp?: boolean;
  insecure?: boolean;
  userAgent?: string;
  /** How many times a failed request is tried again (default 3). */
  retries?: number;
  /** Idle socket timeout in ms (default 60 000). */
  timeoutMs?: number;
  /** First backoff delay in ms, doubled per retry (default 100). */
  backoffMs?: number;
}

/** A request body: bytes, or a function that opens the stream (called again on each retry). */
export type Body = Buffer | (() => Readable);

export interface HttpRequest {
  method: string;
  url: URL;
  headers?: Record<string, string>;
  body?: Body;
  /** Override the transport's retry count for this request (0 = no retry). */
  retries?: number;
  /** Registry name for error messages (default: the URL's host). */
  registry?: string;
}

export interface HttpResponse {
  status: number;
  headers: IncomingHttpHeaders;
  body: IncomingMessage;
  /** URL that finally answered, after redirects. */
  url: URL;
}

const DEFAULT_UA = 'tslayer/0.1';
const MAX_REDIRECTS = 10;
const RETRY_STATUS = new Set([429, 500, 502, 503, 504]);
// Errors of the connection itself (as opposed to TLS verification or bad input): worth a retry.
const RETRY_CODES = new Set([
  'ECONNREFUSED', 'ECONNRESET', 'ECONNABORTED', 'EPIPE', 'ETIMEDOUT', 'EAI_AGAIN', 'EHOSTUNREACH',
  'ENETUNREACH', 'ENETDOWN', 'UND_ERR_SOCKET', 'ERR_STREAM_PREMATURE_CLOSE',
]);

/** Is this registry host (host[:port]) on the loopback interface? */
export function isLoopbackHost(hostport: string): boolean {
  let host = hostport;
  if (host.startsWith('[')) host = host.slice(1, host.indexOf(']'));
  else if (host.split(':').length === 2) host = host.slice(0, host.indexOf(':'));
  host = host.toLowerCase();
  return host === 'localhost' || host === '::1' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(host);
}

export class Transport {
  private readonly httpAgent: http.Agent;
  private readonly httpsAgent: https.Agent;
  private readonly retries: number;
  private readonly timeoutMs: number;
  private readonly backoffMs: number;
  readonly userAgent: string;

  constructor(private readonly opts: TransportOptions = {}) {
    this.httpAgent = new http.Agent({ keepAlive: true, maxSockets: 16 });
    this.httpsAgent = new https.Agent({ keepAlive: true, maxSockets: 16, rejectUnauthorized: !opts.insecure });
    this.retries = opts.retries ?? 3;
    this.timeoutMs = opts.timeoutMs ?? 60_000;
    this.backoffMs = opts.backoffMs ?? 100;
    this.userAgent = opts.userAgent ?? DEFAULT_UA;
  }

  /** Base URL of a registry's API host, e.g. http://127.0.0.1:5000. */
  baseUrl(host: string): URL {
    const plain = this.opts.plainHttp || isLoopbackHost(host);
    return new URL(`${plain ? 'http' : 'https'}://${host}`);
  }

  /** Backoff before retry number `attempt` (1-based). */
  backoff(attempt: number): number {
    return Math.min(this.backoffMs * 2 ** (attempt - 1), 5_000);
  }

  get defaultRetries(): number {
    return this.retries;
  }

  /**
   * Send a request, following redirects and retrying transient failures. The caller owns the
   * response body and must consume or destroy it. Non-retryable HTTP statuses are returned,
   * not thrown; connection failures that outlast the retries throw UNAVAILABLE.
   */
  async send(req: HttpRequest): Promise<HttpResponse> {
    const retries = req.retries ?? this.retries;
    const registry = req.registry ?? req.url.host;
    for (let attempt = 0; ; attempt++) {
      let res: HttpResponse;
      try {
        res = await this.sendFollowingRedirects(req);
      } catch (e) {
        if (attempt < retries && isRetryable(e)) {
          await sleep(this.backoff(attempt + 1));
          continue;
        }
        throw connectionError(e, req, registry);
      }
      if (RETRY_STATUS.has(res.status) && attempt < retries) {
        const wait = retryAfter(res.headers['retry-after']) ?? this.backoff(attempt + 1);
        res.body.resume();
        await sleep(wait);
        continue;
      }
      return res;
    }
  }

  private async sendFollowingRedirects(req: HttpRequest): Promise<HttpResponse> {
    let url = req.url;
    let method = req.method;
    let body = req.body;
    let headers = { ...req.headers };
    for (let hop = 0; ; hop++) {
      const res = await this.once(method, url, headers, body);
      const location = res.headers.location;
      if (![301, 302, 303, 307, 308].includes(res.status) || !location) return { ...res, url };
      res.body.resume();
      if (hop >= MAX_REDIRECTS) {
        throw new TslayerError('UNAVAILABLE', `too many redirects from ${req.url.host} for ${req.method} ${req.url.pathname}`);
      }
      const next = new URL(location, url);
      if (next.host !== url.host) {
        const { authorization: _a, Authorization: _b, ...rest } = headers;
        headers = rest;
      }
      // 303 turns anything into a GET without a body; 301/302 do too for POST (as browsers do).
      if (res.status === 303 || ((res.status === 301 || res.status === 302) && method === 'POST')) {
        method = 'GET';
        body = undefined;
        const { 'Content-Length': _l, 'Content-Type': _t, ...rest } = headers;
        headers = rest;
      }
      url = next;
    }
  }

  /** One HTTP exchange, no redirects, no retries. */
  private once(
    method: string,
    url: URL,
    headers: Record<string, string>,
    body: Body | undefined,
  ): Promise<{ status: number; headers: IncomingHttpHeaders; body: IncomingMessage }> {
    return new Promise((resolve, reject) => {
      const isHttps = url.protocol === 'https:';
      const h: Record<string, string> = { 'User-Agent': this.userAgent, ...headers };
      if (Buffer.isBuffer(body)) h['Content-Length'] = String(body.length);
      const req = (isHttps ? https : http).request(url, {
        method,
        headers: h,
        agent: isHttps ? this.httpsAgent : this.httpAgent,
      });
      let answered = false;
      let bodyError: unknown;
      req.setTimeout(this.timeoutMs, () => {
        req.destroy(Object.assign(new Error(`no answer from ${url.host} in ${this.timeoutMs} ms`), { code: 'ETIMEDOUT' }));
      });
      req.on('error', (e) => {
        // A failing body source is the caller's error, not the connection's: pass it on as is.
        if (!answered) reject(bodyError !== undefined ? new BodySourceError(bodyError) : e);
      });
      req.on('response', (res) => {
        answered = true;
        // The idle timeout above keeps guarding the body: a stalled body errors the response.
        resolve({ status: res.statusCode ?? 0, headers: res.headers, body: res });
      });
      if (body === undefined) req.end();
      else if (Buffer.isBuffer(body)) req.end(body);
      else {
        const src = body();
        // A server may answer (and close) before taking the whole body; that is its answer.
        src.on('error', (e) => {
          bodyError = e;
          req.destroy(e);
        });
        req.on('close', () => src.destroy());
        src.pipe(req);
      }
    });
  }

  /** Close idle keep-alive sockets. */
  close(): void {
    this.httpAgent.destroy();
    this.httpsAgent.destroy();
  }
}

/** Carries the error of a request body's source stream through the retry logic untouched. */
class BodySourceError extends Error {
  constructor(readonly original: unknown) {
    super('request body source failed');
  }
}

function isRetryable(e: unknown): boolean {
  const code = (e as NodeJS.ErrnoException | undefined)?.code;
  return typeof code === 'string' && RETRY_CODES.has(code);
}

function retryAfter(v: string | undefined): number | undefined {
  if (!v) return undefined;
  const s = Number(v);
  return Number.isFinite(s) && s >= 0 && s <= 10 ? s * 1000 : undefined;
}

function connectionError(e: unknown, req: HttpRequest, registry: string): Error {
  if (e instanceof BodySourceError) return e.original instanceof Error ? e.original : new Error(String(e.original));
  if (e instanceof TslayerError) return e;
  const err = e as NodeJS.ErrnoException;
  const code = err.code ?? 'ERROR';
  const tls = /CERT|SSL|TLS|SELF_SIGNED/.test(code);
  const hint = tls ? ' (use --insecure to skip TLS verification, or --plain-http for an HTTP registry)' : '';
  const what = code === 'ECONNREFUSED' ? 'connection refused' : err.message;
  return new TslayerError(
    'UNAVAILABLE',
    `registry ${registry} unavailable: ${req.method} ${req.url.origin}${req.url.pathname}: ${what}${hint}`,
    { cause: e },
  );
}

/** Read a small response body into memory, refusing more than `limit` bytes. */
export async function readBody(res: IncomingMessage, limit: number, what: string): Promise<Buffer> {
  const declared = Number(res.headers['content-length']);
  if (Number.isFinite(declared) && declared > limit) {
    res.destroy();
    throw new TslayerError('EBADSIZE', `${what} is ${declared} bytes, more than the ${limit} allowed`);
  }
  const chunks: Buffer[] = [];
  let n = 0;
  for await (const chunk of res) {
    n += (chunk as Buffer).length;
    if (n > limit) {
      res.destroy();
      throw new TslayerError('EBADSIZE', `${what} is more than the ${limit} bytes allowed`);
    }
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks);
}

/** Throw away a response body we do not need (keeps the socket reusable). */
export function drain(res: HttpResponse): void {
  res.body.resume();
}
