// A worker thread of parallel-gzip.ts: compresses the blocks it is sent, one at a time.
import { parentPort } from 'node:worker_threads';
import { gzipBlockSync } from './gzip-block.js';

interface Job {
  id: number;
  block: Uint8Array;
  level: number;
}

parentPort!.on('message', (job: Job) => {
  try {
    const out = gzipBlockSync(job.block, job.level);
    // A copy that owns its whole ArrayBuffer, so it can be transferred rather than cloned.
    const own = new Uint8Array(out.length);
    own.set(out);
    parentPort!.postMessage({ id: job.id, out: own }, [own.buffer]);
  } catch (e) {
    parentPort!.postMessage({ id: job.id, error: (e as Error).message });
  }
});
