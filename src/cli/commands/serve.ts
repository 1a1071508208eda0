// tslayer serve --address SOCKET
import type { Command } from 'commander';
import { notImplemented } from '../command.js';
import type { CliContext } from '../context.js';

export function register(program: Command, _ctx: CliContext): void {
  program
    .command('serve')
    .description("serve containerd's snapshots API on a unix socket (proxy snapshotter)")
    .requiredOption('--address <socket>', 'unix socket path to listen on')
    .action(async () => notImplemented());
}
