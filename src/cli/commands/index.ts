// Every subcommand, in the order `tslayer --help` lists them, grouped as the contract is.
import type { CommandModule } from '../command.js';
import * as pull from './pull.js';
import * as push from './push.js';
import * as importCmd from './import.js';
import * as exportCmd from './export.js';
import * as images from './images.js';
import * as rmi from './rmi.js';
import * as mount from './mount.js';
import * as umount from './umount.js';
import * as commit from './commit.js';
import * as snapshots from './snapshots.js';
import * as gc from './gc.js';
import * as fsck from './fsck.js';
import * as serve from './serve.js';

export const COMMAND_GROUPS: Array<{ heading: string; commands: CommandModule[] }> = [
  { heading: 'Images:', commands: [pull, push, importCmd, exportCmd, images, rmi] },
  { heading: 'Snapshots and mounts:', commands: [mount, umount, commit, snapshots] },
  { heading: 'Store care:', commands: [gc, fsck] },
  { heading: 'containerd:', commands: [serve] },
];
