// Every subcommand, in the order `tslayer --help` lists them, grouped as the contract is.
//
// Modules are imported dynamically, one by one, so that a command whose module cannot
// load (its part of the native addon did not build, a dependency is missing) fails on its
// own with one "tslayer: <cmd>: ..." line, while --help, --version and every other
// command keep working.
import type { CommandModule } from '../command.js';

export interface CommandEntry {
  /** The command's name as typed (also the name of its placeholder if it cannot load). */
  name: string;
  load: () => Promise<CommandModule>;
}

export const COMMAND_GROUPS: Array<{ heading: string; commands: CommandEntry[] }> = [
  {
    heading: 'Images:',
    commands: [
      { name: 'pull', load: () => import('./pull.js') },
      { name: 'push', load: () => import('./push.js') },
      { name: 'import', load: () => import('./import.js') },
      { name: 'export', load: () => import('./export.js') },
      { name: 'images', load: () => import('./images.js') },
      { name: 'rmi', load: () => import('./rmi.js') },
    ],
  },
  {
    heading: 'Snapshots and mounts:',
    commands: [
      { name: 'mount', load: () => import('./mount.js') },
      { name: 'umount', load: () => import('./umount.js') },
      { name: 'commit', load: () => import('./commit.js') },
      { name: 'snapshots', load: () => import('./snapshots.js') },
    ],
  },
  {
    heading: 'Store care:',
    commands: [
      { name: 'gc', load: () => import('./gc.js') },
      { name: 'fsck', load: () => import('./fsck.js') },
    ],
  },
  {
    heading: 'containerd:',
    commands: [{ name: 'serve', load: () => import('./serve.js') }],
  },
];
