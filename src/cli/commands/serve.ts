// tslayer serve --address SOCKET: containerd's snapshots API on a unix socket, until
// SIGINT/SIGTERM (ctx.signal), then a clean stop (running requests finish, socket removed).
import type { Command } from 'commander';
import type { CliContext } from '../context.js';
import { debugEnabled } from '../exit.js';

export function register(program: Command, ctx: CliContext): void {
  program
    .command('serve')
    .description("serve containerd's snapshots API on a unix socket (proxy snapshotter)")
    .requiredOption('--address <socket>', 'unix socket path to listen on')
    .action(async (opts: { address: string }) => {
      // Loaded here, not at the top: gRPC and the proto loader take ~0.2 s to import, which
      // every other command would pay at startup.
      const { startServer } = await import('../../serve/index.js');
      const store = await ctx.store();
      const line = (s: string) => ctx.stderr.write(`tslayer: serve: ${s}\n`);
      const server = await startServer({
        store,
        driver: ctx.driver,
        address: opts.address,
        driverOptions: { ...ctx.driverOptions },
        log: line,
        ...(debugEnabled(ctx.env) && { trace: line }),
      });
      ctx.info(`tslayer: serving containerd snapshots (driver ${ctx.driver}, root ${store.root}) on ${server.address}`);
      try {
        await new Promise<void>((resolve) => {
          if (ctx.signal.aborted) resolve();
          else ctx.signal.addEventListener('abort', () => resolve(), { once: true });
        });
      } finally {
        await server.close();
      }
      ctx.info('tslayer: serve: stopped');
    });
}
