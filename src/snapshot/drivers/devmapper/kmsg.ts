/**
 * The kernel's own words about a failure. dmsetup only prints strerror ("File exists");
 * what went wrong is in the kernel log ("device-mapper: thin: Creation of new
 * thinly-provisioned device with id 5 failed."). On failure, the records logged since the
 * command started are read from /dev/kmsg (non-blocking: it returns EAGAIN at the end)
 * and the ones about block devices are quoted in the error.
 */
import { closeSync, constants, openSync, readSync } from 'node:fs';

/** Kernel subsystems whose messages explain a dm, thin or filesystem failure. */
const RELEVANT = /device-mapper|dm-\d|\bthin\b|EXT4-fs|XFS|loop\d|I\/O error|blk_update_request|Buffer I\/O/;

/** Slack between node's monotonic clock and the kernel's log clock. */
const SLACK_NS = 250_000_000n;

/** Now, on the clock /dev/kmsg timestamps use (monotonic since boot), in ns. */
export function kernelNow(): bigint {
  return process.hrtime.bigint();
}

/**
 * Relevant kernel messages logged at or after `sinceNs` (from kernelNow()), oldest first,
 * at most `max`. Empty when the log cannot be read (no /dev/kmsg, no permission).
 */
export function kernelMessagesSince(sinceNs: bigint, max = 4): string[] {
  let fd: number;
  try {
    fd = openSync('/dev/kmsg', constants.O_RDONLY | constants.O_NONBLOCK);
  } catch {
    return [];
  }
  const out: string[] = [];
  const buf = Buffer.alloc(8192);
  try {
    for (;;) {
      let n: number;
      try {
        n = readSync(fd, buf, 0, buf.length, null); // one record per read
      } catch (e) {
        // EAGAIN: the end of the log. EPIPE: a record was overwritten while reading; go on.
        if ((e as NodeJS.ErrnoException).code === 'EPIPE') continue;
        break;
      }
      if (n <= 0) break;
      // "prio,seq,usec,flags[,...];message\n key=value continuation lines"
      const rec = buf.toString('utf8', 0, n);
      const semi = rec.indexOf(';');
      if (semi < 0) continue;
      const usec = BigInt(rec.slice(0, semi).split(',')[2] ?? '0');
      const message = rec.slice(semi + 1).split('\n')[0]!;
      if (usec * 1000n + SLACK_NS >= sinceNs && RELEVANT.test(message)) out.push(message);
    }
  } finally {
    closeSync(fd);
  }
  return out.slice(-max);
}
