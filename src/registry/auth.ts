// Registry authentication: the WWW-Authenticate challenge and the answers to it.
//
// Bearer (docker's token auth): GET the challenge's realm with service= and one scope= per
// wanted scope, sending Basic credentials when we have them (anonymously otherwise); the JSON
// answer holds `token` (or `access_token`). Tokens are cached per host and scope set until
// they expire. Basic: the credentials go on each request, cached per host.
// Once a host has challenged us, later requests for new scopes fetch their token up front
// instead of taking a 401 first.
import { TslayerError } from '../errors.js';
import type { CredentialStore, Credential } from './credentials.js';
import { readBody, type Transport } from './transport.js';

export interface Challenge {
  scheme: string; // lower case: 'bearer', 'basic'
  params: Record<string, string>;
}

/** Parse a WWW-Authenticate header: `Bearer realm="...",service="...",scope="..."`. */
export function parseWwwAuthenticate(header: string): Challenge[] {
  const out: Challenge[] = [];
  // Tokens: a scheme word, then key=value or key="quoted" pairs separated by commas.
  const re = /\s*([A-Za-z][\w-]*)(?:\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]*)))?\s*,?/gy;
  let m: RegExpExecArray | null;
  let current: Challenge | undefined;
  while (re.lastIndex < header.length && (m = re.exec(header)) !== null) {
    if (m[0] === '') break;
    const [, name, quoted, bare] = m;
    if (quoted === undefined && bare === undefined) {
      current = { scheme: name!.toLowerCase(), params: {} };
      out.push(current);
    } else if (current) {
      current.params[name!.toLowerCase()] = quoted !== undefined ? quoted.replace(/\\(.)/g, '$1') : bare!;
    }
  }
  return out;
}

export const pullScope = (repository: string) => `repository:${repository}:pull`;
export const pushScope = (repository: string) => `repository:${repository}:pull,push`;

interface CachedToken {
  header: string;
  expires: number;
}

export class Authenticator {
  private readonly challenges = new Map<string, Challenge>(); // host → last challenge
  private readonly tokens = new Map<string, CachedToken>(); // host|scopes → token
  private readonly inflight = new Map<string, Promise<string>>();

  constructor(
    private readonly transport: Transport,
    private readonly credentials?: CredentialStore,
  ) {}

  /** The Authorization header to send up front, if we know how this host authenticates. */
  async header(registry: string, host: string, repository: string, scopes: string[]): Promise<string | undefined> {
    const challenge = this.challenges.get(host);
    if (!challenge) return undefined;
    if (challenge.scheme === 'basic') return this.basicHeader(registry, host, repository);
    const cached = this.tokens.get(tokenKey(host, scopes));
    if (cached && cached.expires > Date.now()) return cached.header;
    return this.fetchToken(registry, host, repository, scopes, challenge);
  }

  /**
   * Answer a 401: remember the challenge and return a fresh Authorization header for the
   * retry. `sent` is the header the refused request carried (if any).
   */
  async onChallenge(
    registry: string,
    host: string,
    repository: string,
    scopes: string[],
    wwwAuthenticate: string | undefined,
    sent: string | undefined,
  ): Promise<string> {
    const challenges = parseWwwAuthenticate(wwwAuthenticate ?? '');
    const challenge = challenges.find((c) => c.scheme === 'bearer') ?? challenges.find((c) => c.scheme === 'basic');
    if (!challenge) {
      throw new TslayerError(
        'UNAUTHORIZED',
        `unauthorized: ${host} refused the request and offered no usable authentication (WWW-Authenticate: ${wwwAuthenticate ?? 'none'})`,
      );
    }
    this.challenges.set(host, challenge);
    if (challenge.scheme === 'basic') {
      const h = await this.basicHeader(registry, host, repository);
      if (h === sent) {
        throw new TslayerError('UNAUTHORIZED', `unauthorized: ${host} rejected the credentials for ${repository}`);
      }
      return h;
    }
    // A token we sent was refused: it expired or was revoked. Never reuse it.
    this.tokens.delete(tokenKey(host, scopes));
    const extra = (challenge.params['scope'] ?? '').split(' ').filter(Boolean);
    return this.fetchToken(registry, host, repository, [...new Set([...scopes, ...extra])], challenge, scopes);
  }

  /** The user name we authenticate as for this repository (undefined: anonymous). */
  async username(registry: string, repository: string): Promise<string | undefined> {
    return (await this.credentials?.get(registry, repository))?.username;
  }

  private async basicHeader(registry: string, host: string, repository: string): Promise<string> {
    const cred = await this.credentials?.get(registry, repository);
    if (!cred) {
      throw new TslayerError('UNAUTHORIZED', `unauthorized: ${host} requires authentication and no credentials were found for ${registry}`);
    }
    return basic(cred);
  }

  private fetchToken(
    registry: string,
    host: string,
    repository: string,
    scopes: string[],
    challenge: Challenge,
    cacheScopes: string[] = scopes,
  ): Promise<string> {
    const key = tokenKey(host, cacheScopes);
    // Parallel requests (layers pulled side by side) share one token request.
    let p = this.inflight.get(key);
    if (!p) {
      p = this.requestToken(registry, host, repository, scopes, challenge)
        .then((t) => {
          this.tokens.set(key, t);
          return t.header;
        })
        .finally(() => this.inflight.delete(key));
      this.inflight.set(key, p);
    }
    return p;
  }

  private async requestToken(
    registry: string,
    host: string,
    repository: string,
    scopes: string[],
    challenge: Challenge,
  ): Promise<CachedToken> {
    const realm = challenge.params['realm'];
    if (!realm) throw new TslayerError('UNAUTHORIZED', `unauthorized: ${host} sent a Bearer challenge without a realm`);
    let url: URL;
    try {
      url = new URL(realm);
    } catch {
      throw new TslayerError('UNAUTHORIZED', `unauthorized: ${host} sent a Bearer challenge with a bad realm "${realm}"`);
    }
    if (challenge.params['service']) url.searchParams.set('service', challenge.params['service']);
    for (const s of scopes) url.searchParams.append('scope', s);
    const cred = await this.credentials?.get(registry, repository);
    const headers: Record<string, string> = { Accept: 'application/json' };
    if (cred) {
      url.searchParams.set('account', cred.username);
      headers['Authorization'] = basic(cred);
    }
    const res = await this.transport.send({ method: 'GET', url, headers, registry: host });
    if (res.status === 401 || res.status === 403) {
      res.body.resume();
      throw new TslayerError(
        'UNAUTHORIZED',
        cred
          ? `unauthorized: token server ${url.origin}${url.pathname} refused the credentials of "${cred.username}" for ${host}`
          : `unauthorized: token server ${url.origin}${url.pathname} refused anonymous access to ${host}; no credentials were found for ${registry}`,
      );
    }
    if (res.status !== 200) {
      res.body.resume();
      throw new TslayerError('UNAVAILABLE', `token server ${url.origin}${url.pathname} for ${host} answered HTTP ${res.status}`);
    }
    const body = await readBody(res.body, 1 << 20, `token from ${url.origin}`);
    let doc: { token?: string; access_token?: string; expires_in?: number; issued_at?: string };
    try {
      doc = JSON.parse(body.toString('utf8'));
    } catch {
      throw new TslayerError('UNAVAILABLE', `token server ${url.origin}${url.pathname} for ${host} sent a body that is not JSON`);
    }
    const token = doc.token ?? doc.access_token;
    if (!token) throw new TslayerError('UNAVAILABLE', `token server ${url.origin}${url.pathname} for ${host} sent no token`);
    // The spec's minimum lifetime is 60 s; renew a little early.
    const lifetime = Math.max(doc.expires_in ?? 60, 60) * 1000;
    const issued = doc.issued_at ? Date.parse(doc.issued_at) : NaN;
    const start = Number.isFinite(issued) && issued <= Date.now() ? issued : Date.now();
    return { header: `Bearer ${token}`, expires: start + lifetime - 10_000 };
  }
}

function basic(cred: Credential): string {
  return `Basic ${Buffer.from(`${cred.username}:${cred.password}`).toString('base64')}`;
}

function tokenKey(host: string, scopes: string[]): string {
  return `${host}|${[...scopes].sort().join(' ')}`;
}
