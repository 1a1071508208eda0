// tslayer commit KEY REF [--message TEXT] [--compression gzip|zstd|none]
import { Option, type Command } from 'commander';
import { referenceArg } from '../args.js';
import { notImplemented } from '../command.js';
import type { CliContext } from '../context.js';

export function register(program: Command, _ctx: CliContext): void {
  program
    .command('commit')
    .description('turn the changes of active snapshot KEY into a new layer and store the image as REF; prints the digest')
    .argument('<key>', 'active snapshot key')
    .argument('<ref>', 'reference for the new image', referenceArg)
    .option('-m, --message <text>', 'history comment for the new layer')
    .addOption(
      new Option('--compression <algorithm>', 'layer compression').choices(['gzip', 'zstd', 'none']).default('gzip'),
    )
    .action(async () => notImplemented());
}
