// Who made a temporary snapshot, so that the debris of a killed process can be told from
// the work of a live one: boot id, pid and the process's start time (a pid alone can be
// reused by a later process; the start time, in clock ticks since boot, cannot).
import { readFile } from 'node:fs/promises';

let mine: Promise<string> | undefined;

/** This process's owner token: `<boot id>/<pid>/<start time>`. */
export function ownerToken(): Promise<string> {
  return (mine ??= (async () => `${await bootId()}/${process.pid}/${await startTime(process.pid)}`)());
}

/**
 * False only when the owner is known to be gone (another boot, or no process with that
 * pid and start time). Anything unreadable counts as alive: never remove live work.
 */
export async function ownerAlive(token: string): Promise<boolean> {
  const [boot, pid, start] = token.split('/');
  if (!boot || !pid || !start) return true;
  try {
    if (boot !== (await bootId())) return false;
    return (await startTime(Number(pid))) === start;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return false; // no such pid
    return true;
  }
}

async function bootId(): Promise<string> {
  return (await readFile('/proc/sys/kernel/random/boot_id', 'utf8')).trim();
}

async function startTime(pid: number): Promise<string> {
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
  // Field 22 (starttime), counted after the ")" that ends the command name (which may hold spaces).
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return fields[19] ?? '';
}
