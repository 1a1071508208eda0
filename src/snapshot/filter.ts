/**
 * containerd's filter syntax (containerd/filters), the subset snapshot walks use:
 *
 *   filter    := selector ( ',' selector )*        all selectors must match (AND)
 *   selector  := fieldpath [ op value ]            no op: the field must be present
 *   fieldpath := field ( '.' field )*              field: bare [A-Za-z0-9_-]+ or "quoted"
 *   op        := '==' | '!=' | '~='                ~= is a regular expression match
 *   value     := "quoted" | bare text up to the next ','
 *
 * Several filters given together match when ANY matches (OR). A field that is not
 * present never matches an operator, as in containerd.
 */
import { invalidArgument } from '../errors.js';
import type { Info } from './types.js';

type Op = '==' | '!=' | '~=';
interface Selector {
  fieldpath: string[];
  op?: Op;
  value?: string;
  re?: RegExp;
}
export type Filter = (info: Info) => boolean;

export function parseFilters(filters: readonly string[]): Filter {
  const parsed = filters.filter((f) => f.trim() !== '').map(parseFilter);
  if (parsed.length === 0) return () => true;
  return (info) => parsed.some((sels) => sels.every((s) => matches(s, info)));
}

function parseFilter(text: string): Selector[] {
  const p = new Parser(text);
  const out: Selector[] = [];
  for (;;) {
    out.push(p.selector());
    p.skipSpace();
    if (p.done()) return out;
    p.expect(',');
  }
}

class Parser {
  private i = 0;
  constructor(private readonly s: string) {}

  done(): boolean {
    return this.i >= this.s.length;
  }
  skipSpace(): void {
    while (!this.done() && /\s/.test(this.s[this.i])) this.i++;
  }
  fail(what: string): never {
    throw invalidArgument(`filter ${JSON.stringify(this.s)}: ${what} at offset ${this.i}`);
  }
  expect(c: string): void {
    if (this.s[this.i] !== c) this.fail(`expected '${c}'`);
    this.i++;
  }

  selector(): Selector {
    this.skipSpace();
    const fieldpath = [this.field()];
    while (this.s[this.i] === '.') {
      this.i++;
      fieldpath.push(this.field());
    }
    this.skipSpace();
    const op = this.s.slice(this.i, this.i + 2);
    if (op !== '==' && op !== '!=' && op !== '~=') return { fieldpath };
    this.i += 2;
    this.skipSpace();
    const value = this.value();
    if (op !== '~=') return { fieldpath, op, value };
    try {
      return { fieldpath, op, value, re: new RegExp(value) };
    } catch {
      return this.fail(`bad regular expression ${JSON.stringify(value)}`);
    }
  }

  private field(): string {
    if (this.s[this.i] === '"') return this.quoted();
    const m = /^[A-Za-z0-9_-]+/.exec(this.s.slice(this.i));
    if (!m) this.fail('expected a field name');
    this.i += m[0].length;
    return m[0];
  }

  private value(): string {
    if (this.s[this.i] === '"') return this.quoted();
    const end = this.s.indexOf(',', this.i);
    const v = this.s.slice(this.i, end < 0 ? undefined : end).trim();
    this.i = end < 0 ? this.s.length : end;
    return v;
  }

  private quoted(): string {
    this.i++; // opening quote
    let out = '';
    while (!this.done()) {
      const c = this.s[this.i++];
      if (c === '"') return out;
      if (c === '\\' && !this.done()) {
        const e = this.s[this.i++];
        out += e === 'n' ? '\n' : e === 't' ? '\t' : e;
      } else out += c;
    }
    return this.fail('unterminated quoted string');
  }
}

function field(info: Info, path: string[]): string | undefined {
  switch (path[0]) {
    case 'kind':
      return info.kind;
    case 'name':
      return info.name;
    case 'parent':
      return info.parent ?? '';
    case 'labels': {
      const key = path.slice(1).join('.');
      return key === '' ? undefined : info.labels[key];
    }
    default:
      return undefined;
  }
}

function matches(s: Selector, info: Info): boolean {
  const v = field(info, s.fieldpath);
  if (v === undefined) return false;
  switch (s.op) {
    case undefined:
      return true;
    case '==':
      return v === s.value;
    case '!=':
      return v !== s.value;
    case '~=':
      return s.re!.test(v);
  }
}
