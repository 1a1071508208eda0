// tslayer umount TARGET
// Unmounts everything tslayer (or anyone) stacked at TARGET. The snapshot stays: mount
// it again with `tslayer mount KEY DIR`, remove it with `tslayer snapshots rm KEY`.
import { resolve } from 'node:path';
import type { Command } from 'commander';
import { notFound } from '../../errors.js';
import { unmountAll } from '../../snapshot/index.js';
import type { CliContext } from '../context.js';
import { writeJson } from '../output.js';

export function register(program: Command, ctx: CliContext): void {
  program
    .command('umount')
    .description('unmount TARGET; the active snapshot stays until `snapshots rm`')
    .argument('<target>', 'mounted directory')
    .action(async (target: string) => {
      const dir = resolve(target);
      const n = await unmountAll(dir);
      if (n === 0) throw notFound(`nothing is mounted at ${dir}`);
      if (ctx.json) writeJson(ctx.stdout, { target: dir, unmounted: n });
    });
}
