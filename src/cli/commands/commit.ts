// tslayer commit KEY REF [--message TEXT] [--compression gzip|zstd|none] [--compression-level N]
// Prints the digest of the new image's manifest; --json prints a summary document.
// KEY stays mounted and usable (src/image/commit.ts says how).
import { InvalidArgumentError, Option, type Command } from 'commander';
import { commitSnapshot } from '../../image/commit.js';
import type { Compression } from '../../image/mediatype.js';
import type { Reference } from '../../image/reference.js';
import { openSnapshotter } from '../../snapshot/index.js';
import { referenceArg } from '../args.js';
import type { CliContext } from '../context.js';
import { UsageError } from '../exit.js';
import { writeJson } from '../output.js';

interface CommitFlags {
  message?: string;
  compression: Compression;
  compressionLevel?: number;
}

/** gzip 0-9, zstd 1-19; checked against the chosen compression in the action. */
function levelArg(s: string): number {
  const n = Number(s);
  if (!/^\d+$/.test(s) || n > 19) throw new InvalidArgumentError(`invalid compression level "${s}": want 0-9 (gzip) or 1-19 (zstd)`);
  return n;
}

export function register(program: Command, ctx: CliContext): void {
  program
    .command('commit')
    .description('turn the changes of active snapshot KEY into a new layer and store the image as REF; prints the digest')
    .argument('<key>', 'active snapshot key')
    .argument('<ref>', 'reference for the new image', referenceArg)
    .option('-m, --message <text>', 'history comment for the new layer')
    .addOption(
      new Option('--compression <algorithm>', 'layer compression').choices(['gzip', 'zstd', 'none']).default('gzip'),
    )
    .option('--compression-level <n>', 'gzip 0-9 (default 6), zstd 1-19 (default 3)', levelArg)
    .action(async (key: string, ref: Reference, flags: CommitFlags) => {
      const level = flags.compressionLevel;
      if (level !== undefined && ((flags.compression === 'gzip' && level > 9) || (flags.compression === 'zstd' && level < 1))) {
        throw new UsageError(`compression level ${level} is out of range for ${flags.compression} (gzip 0-9, zstd 1-19)`);
      }
      const store = await ctx.store();
      const snapshotter = await openSnapshotter(store, ctx.driver, { driverOptions: { ...ctx.driverOptions } });
      try {
        const result = await commitSnapshot({
          store,
          snapshotter,
          key,
          ref,
          message: flags.message,
          compression: flags.compression,
          ...(level !== undefined && { level }),
          signal: ctx.signal,
        });
        if (ctx.json) writeJson(ctx.stdout, result);
        else ctx.stdout.write(`${result.digest}\n`);
      } finally {
        await snapshotter.close();
      }
    });
}
