/**
 * Parsers for command-line values, for commander's `.argument(name, desc, parser)` and
 * `.option(flags, desc, parser)`. They throw commander's InvalidArgumentError, which
 * commander reports as one line naming the argument, and which exits 2 (bad usage):
 * a malformed REF on the command line is the user's typo, not a failed operation.
 */
import { InvalidArgumentError } from 'commander';
import { TslayerError } from '../errors.js';
import { parseReference, type Reference } from '../image/reference.js';
import type { RegistryOptions } from '../registry/client.js';
import { AuthFileCredentials } from '../registry/credentials.js';

/** Runs a library parser and turns its INVALID_ARGUMENT into commander's usage error. */
export function asArgParser<T>(parse: (s: string) => T): (s: string) => T {
  return (s: string) => {
    try {
      return parse(s);
    } catch (e) {
      if (e instanceof TslayerError && e.code === 'INVALID_ARGUMENT') throw new InvalidArgumentError(e.message);
      throw e;
    }
  };
}

/** REF argument: `[registry/]repository[:tag|@digest]`, normalised as docker does. */
export const referenceArg: (s: string) => Reference = asArgParser(parseReference);

const UNITS: Record<string, number> = { '': 1, k: 2 ** 10, m: 2 ** 20, g: 2 ** 30, t: 2 ** 40 };

/**
 * A size such as `10G`, `512M`, `1.5g`, `4096` (bytes). Units are binary (K = 1024), as
 * docker's devmapper `dm.basesize` reads them; a trailing `B` or `iB` is accepted.
 */
export function parseSize(s: string): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?\s*$/i.exec(s);
  if (!m) throw new InvalidArgumentError(`invalid size "${s}": want a number with an optional K, M, G or T suffix`);
  const bytes = Math.floor(Number(m[1]) * UNITS[m[2]!.toLowerCase()]!);
  if (!Number.isSafeInteger(bytes) || bytes <= 0) throw new InvalidArgumentError(`invalid size "${s}": out of range`);
  return bytes;
}

/** Registry client options from the transfer flags every registry command takes (pull, push). */
export function registryOptions(
  ctx: { env: NodeJS.ProcessEnv },
  flags: { plainHttp?: boolean; insecure?: boolean },
): RegistryOptions {
  return {
    plainHttp: flags.plainHttp === true,
    insecure: flags.insecure === true,
    credentials: new AuthFileCredentials({ env: ctx.env }),
  };
}
