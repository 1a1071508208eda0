/**
 * Between the snapshotter's values and the wire's: Info <-> containerd Info (kind enum,
 * google.protobuf.Timestamp, "" for no parent), Mount <-> containerd.types.Mount, and the
 * label size rule containerd enforces (labels.Validate: key + value <= 4096 bytes).
 */
import { invalidArgument } from '../errors.js';
import type { Info, Kind, Labels, Mount } from '../snapshot/index.js';
import type { KindName, PbInfo, PbMount, PbTimestamp } from './proto.js';

const TO_KIND: Record<Kind, KindName> = { view: 'VIEW', active: 'ACTIVE', committed: 'COMMITTED' };
const FROM_KIND: Partial<Record<KindName, Kind>> = { VIEW: 'view', ACTIVE: 'active', COMMITTED: 'committed' };

export function toTimestamp(d: Date): PbTimestamp {
  const ms = d.getTime();
  const seconds = Math.floor(ms / 1000);
  const nanos = (ms - seconds * 1000) * 1_000_000;
  return nanos ? { seconds, nanos } : { seconds };
}

/** A Timestamp as a Date (millisecond precision: what the store keeps). */
export function fromTimestamp(t: PbTimestamp | null | undefined): Date {
  if (!t) return new Date(0);
  return new Date(Number(t.seconds) * 1000 + Math.floor(Number(t.nanos ?? 0) / 1_000_000));
}

export function toPbInfo(info: Info): PbInfo {
  return {
    name: info.name,
    ...(info.parent && { parent: info.parent }),
    kind: TO_KIND[info.kind],
    created_at: toTimestamp(info.created),
    updated_at: toTimestamp(info.updated),
    labels: { ...info.labels },
  };
}

export function fromPbInfo(pb: PbInfo): Info {
  // containerd's proxy reads anything but ACTIVE and VIEW as committed: so do we.
  const info: Info = {
    kind: FROM_KIND[pb.kind] ?? 'committed',
    name: pb.name,
    labels: { ...(pb.labels ?? {}) },
    created: fromTimestamp(pb.created_at),
    updated: fromTimestamp(pb.updated_at),
  };
  if (pb.parent) info.parent = pb.parent;
  return info;
}

export function toPbMount(m: Mount): PbMount {
  return { type: m.type, source: m.source, options: [...m.options] };
}

export function fromPbMount(m: PbMount): Mount {
  return { type: m.type, source: m.source, options: [...(m.options ?? [])] };
}

const MAX_LABEL = 4096;

/** containerd's labels.Validate, applied to labels that arrive over the wire. */
export function checkLabelSizes(labels: Labels | undefined): Labels {
  const out = labels ?? {};
  for (const [k, v] of Object.entries(out)) {
    if (Buffer.byteLength(k) + Buffer.byteLength(v) > MAX_LABEL) {
      throw invalidArgument(
        `label ${JSON.stringify(k.slice(0, 10))}: key and value greater than maximum size (${MAX_LABEL} bytes)`,
      );
    }
  }
  return out;
}
