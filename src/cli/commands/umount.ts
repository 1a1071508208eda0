// tslayer umount TARGET
// Placeholder registered by the CLI framework; the snapshot helper replaces the body.
import type { Command } from 'commander';
import { notImplemented } from '../command.js';
import type { CliContext } from '../context.js';

export function register(program: Command, _ctx: CliContext): void {
  program
    .command('umount')
    .description('unmount TARGET; the active snapshot stays until `snapshots rm`')
    .argument('<target>', 'mounted directory')
    .action(async () => notImplemented());
}
