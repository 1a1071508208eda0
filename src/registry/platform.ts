// Choosing one manifest from an index by platform, with containerd's matching rules
// (platforms.Only): names are normalised (aarch64 → arm64, arm64/v8 ≡ arm64, armhf →
// arm/v7, x86_64 → amd64), and a platform also runs the ones below it, best first
// (arm/v7 → v6 → v5, arm64 → arm/v8..v5, amd64 → 386).
import { notFound, invalidArgument } from '../errors.js';
import type { Descriptor, Index, Platform } from '../image/descriptor.js';

export interface PlatformSpec {
  os: string;
  architecture: string;
  variant?: string;
}

/** Parse `os/arch[/variant]` (also `arch` alone, with the host's OS). */
export function parsePlatform(s: string): PlatformSpec {
  const parts = s.split('/');
  if (parts.length > 3 || parts.some((p) => p === '')) {
    throw invalidArgument(`invalid platform "${s}": want os/arch[/variant]`);
  }
  if (parts.length === 1) return normalizePlatform({ os: hostOs(), architecture: parts[0]! });
  const [os, architecture, variant] = parts as [string, string, string?];
  return normalizePlatform({ os, architecture, ...(variant !== undefined && { variant }) });
}

export function formatPlatform(p: PlatformSpec): string {
  return `${p.os}/${p.architecture}${p.variant ? `/${p.variant}` : ''}`;
}

/** The platform this process runs on, in OCI terms. */
export function hostPlatform(): PlatformSpec {
  const archs: Record<string, string> = {
    x64: 'amd64', arm64: 'arm64', arm: 'arm', ia32: '386', ppc64: 'ppc64le', s390x: 's390x',
    riscv64: 'riscv64', loong64: 'loong64', mips: 'mips', mipsel: 'mipsle',
  };
  const architecture = archs[process.arch] ?? process.arch;
  let variant: string | undefined;
  if (architecture === 'arm') {
    // Node records the ARM version it was built for; a good stand-in for the CPU's.
    const v = (process.config.variables as Record<string, unknown>)['arm_version'];
    variant = `v${typeof v === 'string' || typeof v === 'number' ? v : 7}`;
  }
  return normalizePlatform({ os: hostOs(), architecture, ...(variant && { variant }) });
}

function hostOs(): string {
  return process.platform === 'win32' ? 'windows' : process.platform;
}

/** containerd's Normalize: canonical os, architecture and variant ('' variant is dropped). */
export function normalizePlatform(p: PlatformSpec): PlatformSpec {
  let os = p.os.toLowerCase();
  if (os === 'macos') os = 'darwin';
  let arch = p.architecture.toLowerCase();
  let variant = (p.variant ?? '').toLowerCase();
  switch (arch) {
    case 'i386':
      arch = '386';
      variant = '';
      break;
    case 'x86_64':
    case 'x86-64':
    case 'amd64':
      arch = 'amd64';
      if (variant === 'v1') variant = '';
      break;
    case 'aarch64':
    case 'arm64':
      arch = 'arm64';
      if (variant === '8' || variant === 'v8' || variant === 'v8.0') variant = '';
      else if (variant === '9' || variant === '9.0' || variant === 'v9.0') variant = 'v9';
      break;
    case 'armhf':
      arch = 'arm';
      variant = 'v7';
      break;
    case 'armel':
      arch = 'arm';
      variant = 'v6';
      break;
    case 'arm':
      if (variant === '' || variant === '7') variant = 'v7';
      else if (variant === '5' || variant === '6' || variant === '8') variant = `v${variant}`;
      break;
  }
  return { os, architecture: arch, ...(variant !== '' && { variant }) };
}

/** The platforms `want` can run, best first (containerd's platformVector). */
export function compatiblePlatforms(want: PlatformSpec): PlatformSpec[] {
  const p = normalizePlatform(want);
  const out: PlatformSpec[] = [p];
  const version = (v: string | undefined) => Number.parseInt((v ?? '').replace(/^v/, ''), 10);
  switch (p.architecture) {
    case 'amd64': {
      for (let v = version(p.variant) - 1; v >= 1; v--) out.push({ ...p, variant: `v${v}` });
      out.push({ os: p.os, architecture: '386' });
      break;
    }
    case 'arm': {
      for (let v = version(p.variant) - 1; v >= 5; v--) out.push({ ...p, variant: `v${v}` });
      break;
    }
    case 'arm64': {
      // arm64 (v8.x, v9.x) also runs lower arm64 revisions and 32-bit arm v8 and below.
      const variant = p.variant ?? 'v8';
      const m = /^v(8|9)(?:\.(\d))?$/.exec(variant);
      if (m) {
        const major = Number(m[1]);
        const minor = Number(m[2] ?? 0);
        const lower: string[] = [];
        for (let n = minor - 1; n >= 0; n--) lower.push(n === 0 ? `v${major}` : `v${major}.${n}`);
        if (major === 9) for (let n = Math.min(minor + 5, 9); n >= 0; n--) lower.push(n === 0 ? 'v8' : `v8.${n}`);
        for (const v of lower) out.push(normalizePlatform({ os: p.os, architecture: 'arm64', variant: v }));
        out.push(...compatiblePlatforms({ os: p.os, architecture: 'arm', variant: 'v8' }));
      }
      break;
    }
  }
  return out;
}

/** Do two platforms name the same thing once normalised? */
export function platformEquals(a: PlatformSpec, b: PlatformSpec): boolean {
  const x = normalizePlatform(a);
  const y = normalizePlatform(b);
  return x.os === y.os && x.architecture === y.architecture && (x.variant ?? '') === (y.variant ?? '');
}

/**
 * Pick the manifest for `want` (default: the host's) from an index. Entries without a
 * platform (attestations and the like) are never chosen. The best compatible platform wins;
 * among equals, the first in the index.
 */
export function selectPlatform(index: Index, want?: string | PlatformSpec): Descriptor {
  const target = want === undefined ? hostPlatform() : typeof want === 'string' ? parsePlatform(want) : want;
  const candidates = compatiblePlatforms(target);
  for (const c of candidates) {
    const hit = index.manifests.find((d) => d.platform && platformEquals(toSpec(d.platform), c));
    if (hit) return hit;
  }
  const available = index.manifests
    .filter((d) => d.platform)
    .map((d) => formatPlatform(normalizePlatform(toSpec(d.platform!))));
  throw notFound(
    `no manifest for platform ${formatPlatform(target)} in index; available: ${available.length ? available.join(', ') : 'none'}`,
  );
}

function toSpec(p: Platform): PlatformSpec {
  return { os: p.os, architecture: p.architecture, ...(p.variant !== undefined && { variant: p.variant }) };
}
