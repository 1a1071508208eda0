// Image references as docker writes them: [registry/]repository[:tag|@digest].
// Parsing follows docker's distribution/reference grammar and its normalisation
// (ParseNormalizedNamed): `busybox` is `docker.io/library/busybox:latest`.
import { invalidArgument } from '../errors.js';
import { isDigest, type Digest } from './digest.js';

export interface Reference {
  /** Registry as written, normalised: `docker.io`, `localhost:5000`, `127.0.0.1:5000`. */
  registry: string;
  /** Repository path inside the registry: `library/busybox`, `a/b`. */
  repository: string;
  tag?: string;
  digest?: Digest;
}

export const DOCKER_HUB = 'docker.io';
/** The host that actually serves docker.io's distribution API. */
export const DOCKER_HUB_HOST = 'registry-1.docker.io';
const DEFAULT_TAG = 'latest';
const NAME_MAX = 255;

// Grammar pieces of distribution/reference (regexp.go).
const DOMAIN_COMPONENT = '(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])';
const DOMAIN = new RegExp(`^(?:${DOMAIN_COMPONENT}(?:\\.${DOMAIN_COMPONENT})*|\\[[a-fA-F0-9:]+\\])(?::[0-9]+)?$`);
const PATH_COMPONENT = /^[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*$/;
const TAG = /^[\w][\w.-]{0,127}$/;
const ANCHORED_HEX64 = /^[a-f0-9]{64}$/;

/** Parse a reference, filling in docker's defaults (docker.io, library/, :latest when no digest). */
export function parseReference(input: string): Reference {
  const bad = (why: string) => invalidArgument(`invalid image reference "${input}": ${why}`);
  if (input === '') throw bad('empty');
  if (ANCHORED_HEX64.test(input)) throw bad('cannot specify 64-byte hexadecimal strings');

  // Digest: everything after the first '@'.
  let rest = input;
  let digest: Digest | undefined;
  const at = rest.indexOf('@');
  if (at >= 0) {
    const d = rest.slice(at + 1);
    if (!isDigest(d)) throw bad(`invalid digest "${d}"`);
    digest = d;
    rest = rest.slice(0, at);
  }

  // Tag: after the last ':' that comes after the last '/' (a ':' before it is a port).
  let tag: string | undefined;
  const colon = rest.lastIndexOf(':');
  if (colon > rest.lastIndexOf('/')) {
    tag = rest.slice(colon + 1);
    if (!TAG.test(tag)) throw bad(`invalid tag "${tag}"`);
    rest = rest.slice(0, colon);
  }

  const { registry, repository } = splitName(rest, bad);
  if (registry.length + 1 + repository.length > NAME_MAX) throw bad(`name longer than ${NAME_MAX} characters`);
  if (tag === undefined && digest === undefined) tag = DEFAULT_TAG;
  return withToString({ registry, repository, ...(tag !== undefined && { tag }), ...(digest && { digest }) });
}

// Docker's splitDockerDomain: the first component is a registry when it has a '.' or ':',
// is 'localhost', or has upper case letters (which a repository may not).
function splitName(name: string, bad: (why: string) => Error): { registry: string; repository: string } {
  let registry = DOCKER_HUB;
  let repository = name;
  const slash = name.indexOf('/');
  if (slash >= 0) {
    const first = name.slice(0, slash);
    if (/[.:]/.test(first) || first === 'localhost' || first.toLowerCase() !== first) {
      registry = first;
      repository = name.slice(slash + 1);
    }
  }
  if (!DOMAIN.test(registry)) throw bad(`invalid registry "${registry}"`);
  if (registry === 'index.docker.io') registry = DOCKER_HUB;
  if (repository === '') throw bad('empty repository');
  if (repository.toLowerCase() !== repository) throw bad('repository name must be lowercase');
  for (const comp of repository.split('/')) {
    if (!PATH_COMPONENT.test(comp)) throw bad(`invalid repository path component "${comp}"`);
  }
  if (registry === DOCKER_HUB && !repository.includes('/')) repository = `library/${repository}`;
  return { registry, repository };
}

/** Full normalised name: `docker.io/library/busybox:latest`, `host:5000/a/b:t@sha256:...`. */
export function formatReference(r: Reference): string {
  return `${r.registry}/${r.repository}${suffix(r)}`;
}

/** Short form for display, as docker shows it: `busybox:latest`, `user/app:1`, `localhost:5000/x:t`. */
export function familiarReference(r: Reference): string {
  let name = `${r.registry}/${r.repository}`;
  if (r.registry === DOCKER_HUB) {
    name = r.repository.startsWith('library/') && r.repository.split('/').length === 2
      ? r.repository.slice('library/'.length)
      : r.repository;
  }
  return `${name}${suffix(r)}`;
}

/** The host:port to send distribution API requests to (docker.io is served by registry-1.docker.io). */
export function registryHost(registry: string): string {
  return registry === DOCKER_HUB ? DOCKER_HUB_HOST : registry;
}

function suffix(r: Reference): string {
  return `${r.tag !== undefined ? `:${r.tag}` : ''}${r.digest ? `@${r.digest}` : ''}`;
}

// A non-enumerable toString so `${ref}` prints the full name while the object stays a
// plain record (deepEqual and spreading behave as for any object literal).
function withToString(r: Reference): Reference {
  Object.defineProperty(r, 'toString', { value: () => formatReference(r), enumerable: false });
  return r;
}
