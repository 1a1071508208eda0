// tslayer gc
import type { Command } from 'commander';
import { notImplemented } from '../command.js';
import type { CliContext } from '../context.js';

export function register(program: Command, _ctx: CliContext): void {
  program
    .command('gc')
    .description('remove blobs and snapshots that no image or snapshot references')
    .action(async () => notImplemented());
}
