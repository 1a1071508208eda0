// Registry credentials, read where docker and podman keep them.
//
// Files, first match wins (podman's order, then docker's):
//   $REGISTRY_AUTH_FILE
//   ${XDG_RUNTIME_DIR}/containers/auth.json
//   $DOCKER_CONFIG/config.json, else ~/.docker/config.json
// Each has `{"auths": {"KEY": {"auth": base64("user:password")}}}`; KEY may be a bare host
// (`localhost:5000`), a URL (`https://index.docker.io/v1/`, `http://host/v2/`), or, podman's
// extension, host/namespace[/repo] for credentials scoped to part of a registry.
// Credential helpers (credsStore/credHelpers) are not run.
import { readFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { TslayerError } from '../errors.js';
import { DOCKER_HUB } from '../image/reference.js';

export interface Credential {
  username: string;
  password: string;
}

export interface CredentialStore {
  /** Credentials for `registry` (as in a Reference: `docker.io`, `host:port`), most specific to `repository`. */
  get(registry: string, repository?: string): Promise<Credential | undefined>;
}

/** Fixed credentials, keyed by registry (for programs that take --creds, and for tests). */
export class StaticCredentials implements CredentialStore {
  constructor(private readonly byRegistry: Record<string, Credential>) {}
  async get(registry: string): Promise<Credential | undefined> {
    return this.byRegistry[registry];
  }
}

export interface AuthFileOptions {
  /** Environment to read the variables from (default process.env). */
  env?: NodeJS.ProcessEnv;
  /** Explicit file list instead of the default search order. */
  files?: string[];
}

/** Credentials from docker's config.json and containers' auth.json, re-read on each lookup. */
export class AuthFileCredentials implements CredentialStore {
  private readonly files: string[];

  constructor(opts: AuthFileOptions = {}) {
    this.files = opts.files ?? defaultAuthFiles(opts.env ?? process.env);
  }

  async get(registry: string, repository?: string): Promise<Credential | undefined> {
    for (const file of this.files) {
      const auths = await readAuths(file);
      if (!auths) continue;
      const hit = lookup(auths, registry, repository, file);
      if (hit) return hit;
    }
    return undefined;
  }
}

export function defaultAuthFiles(env: NodeJS.ProcessEnv = process.env): string[] {
  const files: string[] = [];
  if (env['REGISTRY_AUTH_FILE']) files.push(env['REGISTRY_AUTH_FILE']);
  if (env['XDG_RUNTIME_DIR']) files.push(join(env['XDG_RUNTIME_DIR'], 'containers', 'auth.json'));
  const dockerDir = env['DOCKER_CONFIG'] || join(env['HOME'] || homedir(), '.docker');
  files.push(join(dockerDir, 'config.json'));
  return files;
}

type AuthEntry = { auth?: string; username?: string; password?: string };

async function readAuths(file: string): Promise<Record<string, AuthEntry> | undefined> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT' || (e as NodeJS.ErrnoException).code === 'ENOTDIR') {
      return undefined;
    }
    throw e;
  }
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (e) {
    throw new TslayerError('INVALID_ARGUMENT', `credentials file ${file} is not valid JSON: ${(e as Error).message}`);
  }
  const auths = (doc as { auths?: unknown } | null)?.auths;
  return auths && typeof auths === 'object' ? (auths as Record<string, AuthEntry>) : undefined;
}

// Keys name a registry in several spellings; reduce each to host[/path] for comparison.
function normalizeKey(key: string): string {
  let k = key.replace(/^[a-z]+:\/\//i, '').replace(/\/+$/, '');
  k = k.replace(/\/v[12]$/, '');
  if (k === 'index.docker.io' || k === 'registry-1.docker.io') k = DOCKER_HUB;
  return k;
}

function lookup(
  auths: Record<string, AuthEntry>,
  registry: string,
  repository: string | undefined,
  file: string,
): Credential | undefined {
  const byKey = new Map<string, AuthEntry>();
  for (const [key, entry] of Object.entries(auths)) byKey.set(normalizeKey(key), entry);
  // Most specific first: host/a/b, host/a, host.
  const wanted: string[] = [];
  if (repository) {
    const parts = repository.split('/');
    for (let i = parts.length; i >= 1; i--) wanted.push(`${registry}/${parts.slice(0, i).join('/')}`);
  }
  wanted.push(registry);
  for (const key of wanted) {
    const entry = byKey.get(key);
    if (entry) {
      const cred = decode(entry, key, file);
      if (cred) return cred;
    }
  }
  return undefined;
}

function decode(entry: AuthEntry, key: string, file: string): Credential | undefined {
  if (entry.auth) {
    const plain = Buffer.from(entry.auth, 'base64').toString('utf8');
    const colon = plain.indexOf(':');
    if (colon < 0) {
      throw new TslayerError('INVALID_ARGUMENT', `credentials for ${key} in ${file}: "auth" is not base64 of user:password`);
    }
    return { username: plain.slice(0, colon), password: plain.slice(colon + 1) };
  }
  if (entry.username !== undefined && entry.password !== undefined) {
    return { username: entry.username, password: entry.password };
  }
  return undefined;
}
