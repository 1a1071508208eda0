// An HTTP proxy in front of a test registry that records the requests it passes on and
// can misbehave on purpose: stall a blob's body after some bytes (a connection that
// hangs mid-layer), or drop Range headers (a registry that ignores them).
import http from 'node:http';
import type { AddressInfo } from 'node:net';

export interface Seen {
  method: string;
  url: string;
  /** The Range header the client sent (the proxy may not pass it on). */
  range: string | undefined;
  status?: number;
}

export interface ProxyOptions {
  /** For GETs of these blobs, send `after` bytes of the body, then nothing more (until closed). */
  stall?: { digests: string[]; after: number };
  /** Drop the Range header: the registry answers 200 with the whole blob, as one that ignores Range. */
  stripRange?: boolean;
}

/** An HTTP proxy in front of `target` that records every request and plays `opts`. */
export async function startProxy(target: string, opts: ProxyOptions = {}): Promise<{ host: string; requests: Seen[]; close(): Promise<void> }> {
  const [thost, tport] = [target.slice(0, target.lastIndexOf(':')), Number(target.slice(target.lastIndexOf(':') + 1))];
  const requests: Seen[] = [];
  const srv = http.createServer((req, res) => {
    const url = req.url ?? '/';
    const rec: Seen = { method: req.method ?? 'GET', url, range: req.headers.range };
    requests.push(rec);
    const headers = { ...req.headers };
    if (opts.stripRange) delete headers.range;
    const stall = opts.stall && req.method === 'GET' && opts.stall.digests.some((d) => url.includes(d)) ? opts.stall.after : undefined;
    const up = http.request({ host: thost, port: tport, method: req.method, path: url, headers }, (upRes) => {
      rec.status = upRes.statusCode;
      res.writeHead(upRes.statusCode ?? 502, upRes.headers);
      if (stall === undefined) {
        upRes.pipe(res);
        return;
      }
      let sent = 0;
      upRes.on('data', (chunk: Buffer) => {
        if (sent >= stall) return upRes.pause();
        const part = chunk.subarray(0, stall - sent);
        sent += part.length;
        res.write(part);
      });
    });
    up.on('error', () => res.destroy());
    req.pipe(up);
  });
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  const port = (srv.address() as AddressInfo).port;
  return {
    host: `127.0.0.1:${port}`,
    requests,
    close: () =>
      new Promise<void>((r) => {
        srv.closeAllConnections();
        srv.close(() => r());
      }),
  };
}
