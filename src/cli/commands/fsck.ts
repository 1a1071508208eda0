// tslayer fsck [--repair]
import type { Command } from 'commander';
import { notImplemented } from '../command.js';
import type { CliContext } from '../context.js';

export function register(program: Command, _ctx: CliContext): void {
  program
    .command('fsck')
    .description('verify every blob against its digest and the metadata against the disk')
    .option('--repair', 'remove what is corrupt or dangling instead of only reporting it')
    .action(async () => notImplemented());
}
