/**
 * Protobuf's wire format, as the hand-written messages in proto.ts need it: a Writer
 * that appends fields (varints, 64-bit integers given as decimal strings or numbers,
 * bytes, embedded messages whose length is written once known) and a Reader that walks
 * the fields of an answer, skipping those it is not asked for.
 */

export const VARINT = 0;
const I64 = 1;
export const LEN = 2;
const I32 = 5;

const TWO_32 = 2 ** 32;

export class Writer {
  private buf = Buffer.allocUnsafe(512);
  private pos = 0;

  finish(): Buffer {
    return this.buf.subarray(0, this.pos);
  }

  private room(n: number): void {
    if (this.pos + n <= this.buf.length) return;
    const bigger = Buffer.allocUnsafe(Math.max(this.buf.length * 2, this.pos + n));
    this.buf.copy(bigger, 0, 0, this.pos);
    this.buf = bigger;
  }

  /** An unsigned integer below 2^53. */
  private varint(n: number): void {
    this.room(10);
    while (n >= 0x80) {
      this.buf[this.pos++] = (n % 0x80) | 0x80;
      n = Math.floor(n / 0x80);
    }
    this.buf[this.pos++] = n;
  }

  /** Any 64-bit integer (negative ones as two's complement, as protobuf's int64). */
  private varint64(v: string | number | bigint): void {
    // Most values fit in a double exactly: revisions, and decimal strings of up to 15 digits.
    const small = typeof v === "string" && v.length <= 15 && v[0] !== "-" ? Number(v) : v;
    if (typeof small === "number" && Number.isSafeInteger(small) && small >= 0) {
      this.varint(small);
      return;
    }
    let n = BigInt.asUintN(64, BigInt(v));
    this.room(10);
    while (n >= 0x80n) {
      this.buf[this.pos++] = Number(n & 0x7fn) | 0x80;
      n >>= 7n;
    }
    this.buf[this.pos++] = Number(n);
  }

  private tag(field: number, wire: number): void {
    this.varint(field * 8 + wire);
  }

  /** An int64 field, skipped when absent or zero (proto3's default). */
  int64(field: number, v: string | number | bigint | undefined): void {
    if (v === undefined || v === null || v === 0 || v === "0" || v === 0n) return;
    this.tag(field, VARINT);
    this.varint64(v);
  }

  /** A member of a oneof: written even when zero, so that it is the one set. */
  oneofInt64(field: number, v: string | number): void {
    this.tag(field, VARINT);
    this.varint64(v);
  }

  enum(field: number, v: number): void {
    if (v === 0) return;
    this.tag(field, VARINT);
    this.varint(v);
  }

  bool(field: number, v: boolean | undefined): void {
    if (!v) return;
    this.tag(field, VARINT);
    this.varint(1);
  }

  bytes(field: number, v: Uint8Array | undefined, always = false): void {
    if (v === undefined || v === null || (v.length === 0 && !always)) return;
    this.tag(field, LEN);
    this.varint(v.length);
    this.room(v.length);
    this.buf.set(v, this.pos);
    this.pos += v.length;
  }

  /** A nested message, written by `body` into this buffer after its length. */
  message(field: number, body: (w: Writer) => void): void {
    this.tag(field, LEN);
    // Room for a length of up to 4 bytes (below 256 MiB), the body moved back once the
    // length is known and shorter.
    this.room(4);
    const at = this.pos;
    this.pos += 4;
    body(this);
    const end = this.pos;
    let length = end - at - 4;
    let p = at;
    while (length >= 0x80) {
      this.buf[p++] = (length & 0x7f) | 0x80;
      length >>>= 7;
    }
    this.buf[p++] = length;
    if (p < at + 4) this.buf.copyWithin(p, at + 4, end);
    this.pos = end - (at + 4 - p);
  }
}

export class Reader {
  pos: number;

  constructor(
    readonly buf: Buffer,
    start: number,
    readonly end: number,
  ) {
    this.pos = start;
  }

  get more(): boolean {
    return this.pos < this.end;
  }

  /** A varint as two 32-bit halves. */
  private halves(): [number, number] {
    let lo = 0;
    let hi = 0;
    let shift = 0;
    for (let i = 0; i < 10; i++) {
      if (this.pos >= this.end) throw truncated();
      const b = this.buf[this.pos++] as number;
      if (shift < 28) lo += (b & 0x7f) * 2 ** shift;
      else if (shift === 28) {
        lo += (b & 0x0f) * 2 ** 28;
        hi += (b & 0x7f) >> 4;
      } else hi += (b & 0x7f) * 2 ** (shift - 32);
      shift += 7;
      if (b < 0x80) return [lo, hi % TWO_32];
    }
    throw new Error("protobuf: malformed varint");
  }

  /** A varint that fits in 32 bits (tags, lengths, enums, bools). */
  uint32(): number {
    return this.halves()[0];
  }

  /** An int64 or uint64 as its decimal string (uint64 for `unsigned`). */
  int64(unsigned = false): string {
    const [lo, hi] = this.halves();
    if (hi === 0) return String(lo);
    if (!unsigned && hi >= 0x80000000) return String(BigInt.asIntN(64, (BigInt(hi) << 32n) | BigInt(lo)));
    if (hi < 0x200000) return String(hi * TWO_32 + lo);
    return String((BigInt(hi) << 32n) | BigInt(lo));
  }

  bytes(): Buffer {
    const n = this.uint32();
    if (this.pos + n > this.end) throw truncated();
    const b = this.buf.subarray(this.pos, this.pos + n);
    this.pos += n;
    return b;
  }

  /** A nested message's reader; this one moves past it. */
  message(): Reader {
    const n = this.uint32();
    if (this.pos + n > this.end) throw truncated();
    const r = new Reader(this.buf, this.pos, this.pos + n);
    this.pos += n;
    return r;
  }

  skip(wire: number): void {
    if (wire === VARINT) this.halves();
    else if (wire === I64) this.pos += 8;
    else if (wire === LEN) {
      const n = this.uint32(); // (read before `pos` is: it moves `pos`)
      this.pos += n;
    } else if (wire === I32) this.pos += 4;
    else throw new Error(`protobuf: unsupported wire type ${wire}`);
    if (this.pos > this.end) throw truncated();
  }
}

const truncated = () => new Error("protobuf: truncated message");
export const EMPTY: Buffer = Buffer.alloc(0);
