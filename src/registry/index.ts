// The registry client's public surface, for the CLI and for runtimes that embed tslayer.
export { RegistryClient, MANIFEST_LIMIT, type RegistryOptions, type PushBlobOptions } from './client.js';
export type { FetchBlobOptions } from './blob.js';
export {
  AuthFileCredentials,
  StaticCredentials,
  defaultAuthFiles,
  type Credential,
  type CredentialStore,
  type AuthFileOptions,
} from './credentials.js';
export {
  selectPlatform,
  parsePlatform,
  formatPlatform,
  hostPlatform,
  normalizePlatform,
  compatiblePlatforms,
  platformEquals,
  type PlatformSpec,
} from './platform.js';
export { parseWwwAuthenticate, type Challenge } from './auth.js';
export { isLoopbackHost } from './transport.js';
