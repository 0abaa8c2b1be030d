/**
 * Float32 values written as JSON bytes, exactly as JSON.stringify writes them today (V8's shortest
 * round-trip form of the value as a double, `String(x)`; NaN and the infinities as the strings
 * "NaN", "Infinity", "-Infinity"), but straight into a byte buffer and without V8's number to
 * string conversion, which was most of a large JSON answer's cost (PP-OCR rec: 79 500 floats).
 *
 * How: a float32 x that is not an integer is m / 2^s exactly (m odd, under 2^24, 1 <= s <= 149),
 * so its exact decimal digits are those of the integer N = m * 5^s, which is computed exactly in
 * base-1e8 limbs (every product below 2^53). The shortest decimal that reads back as the same
 * double is round(x, p digits) for the least p whose distance to x is within half the double's
 * ulp (a p-digit rounding within it makes every longer one so too; among p-digit decimals it is
 * the closest, which is the one V8 picks). The distance is compared with margins: whenever it is
 * within 1e-10 of the bound, a rounding is an exact tie, x is a power of two (its interval is
 * lopsided) or an integer, the value goes to String(x). test/unit/float32-json.test.ts compares
 * every path with String(x) over random bit patterns, subnormals, -0, NaN and the infinities.
 */

const LIMB = 1e8;
/** 5^s in base-1e8 limbs, least significant first, for s = 0..149. */
const POW5: Float64Array[] = [];
{
  let cur = [1];
  for (let s = 0; s <= 149; s++) {
    POW5.push(Float64Array.from(cur));
    const next: number[] = [];
    let carry = 0;
    for (const l of cur) {
      const v = l * 5 + carry;
      carry = Math.floor(v / LIMB);
      next.push(v - carry * LIMB);
    }
    if (carry > 0) next.push(carry);
    cur = next;
  }
}
/** 2^-k exactly, k = 0..260. */
const POW2_NEG = Float64Array.from({ length: 261 }, (_, k) => 2 ** -k);
/** 10^k correctly rounded, for k = -40..400 (POW10[k + 40]). */
const POW10 = Float64Array.from({ length: 441 }, (_, i) => Number(`1e${i - 40}`));

// Scratch, reused for every value (one thread).
const limbs = new Float64Array(16);
const digits = new Uint8Array(17);
const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);
/** 10^k for k = 0..9, exact. */
const P10 = [1, 10, 100, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9];
/** 10^-k for k = 0..9, rounded. */
const INV10 = [1, 0.1, 0.01, 1e-3, 1e-4, 1e-5, 1e-6, 1e-7, 1e-8, 1e-9];
/** Half of 10^r * 1e8, the tail of an exact tie when r digits of B are dropped. */
const HALF_UNIT = P10.map((u) => (u * 1e8) / 2);
/** The tens and ones digits of 0..99. */
const TENS = Uint8Array.from({ length: 100 }, (_, i) => Math.floor(i / 10));
const ONES = Uint8Array.from({ length: 100 }, (_, i) => i % 10);

const MARGIN = 1e-10;

/**
 * floor(v / d) for integers 0 <= v < 2^53 and d a power of ten with `inv` its reciprocal: a
 * multiplication (a division costs several times more), corrected by one when the rounding of
 * `inv` or of the product lands it on the wrong side of an integer.
 */
function quot(v: number, d: number, inv: number): number {
  const q = Math.floor(v * inv);
  const r = v - q * d;
  return r < 0 ? q - 1 : r >= d ? q + 1 : q;
}

/** Writes v < 1e8 as 8 decimal digits (zero-padded) into `digits` at `at`. */
function put8(v: number, at: number): void {
  const hi = quot(v, 1e4, 1e-4);
  const lo = v - hi * 1e4;
  const a = quot(hi, 100, 0.01);
  const b = quot(lo, 100, 0.01);
  put2(a, at);
  put2(hi - a * 100, at + 2);
  put2(b, at + 4);
  put2(lo - b * 100, at + 6);
}

function put2(v: number, at: number): void {
  digits[at] = TENS[v]!;
  digits[at + 1] = ONES[v]!;
}

/**
 * Writes x's JSON form at `pos` of `out` (room for MAX_FLOAT32_JSON_BYTES needed); returns the new position, or
 * -1 when x must go through String(x) (the caller writes it).
 */
function writeFast(x: number, out: Uint8Array, pos: number): number {
  f32[0] = x;
  const bits = u32[0]!;
  const exp = (bits >>> 23) & 0xff;
  const frac = bits & 0x7fffff;
  if (exp === 0xff) return -1; // NaN, infinities
  if (exp === 0 && frac === 0) {
    out[pos] = 48; // "0", -0 too (as JSON.stringify writes it)
    return pos + 1;
  }
  // x = m / 2^s, m odd.
  let m = exp === 0 ? frac : frac | 0x800000;
  let s = exp === 0 ? 149 : 150 - exp;
  while ((m & 1) === 0) {
    m >>>= 1;
    s--;
  }
  if (s <= 0 || m === 1) return -1; // integers (String(x) is cheap for the small ones), powers of two
  // N = m * 5^s exactly, in base-1e8 limbs (least significant first); x = N / 10^s.
  const p5 = POW5[s]!;
  let n = 0;
  let carry = 0;
  for (let i = 0; i < p5.length; i++) {
    const v = m * p5[i]! + carry;
    carry = Math.floor(v * 1e-8);
    let l = v - carry * LIMB;
    if (l < 0) {
      l += LIMB;
      carry--;
    } else if (l >= LIMB) {
      l -= LIMB;
      carry++;
    }
    limbs[n++] = l;
  }
  // m < 2^24 < 1e8: one more limb at most.
  if (carry > 0) limbs[n++] = carry;
  const top = limbs[n - 1]!;
  const t = top >= 1e7 ? 8 : top >= 1e6 ? 7 : top >= 1e5 ? 6 : top >= 1e4 ? 5 : top >= 1e3 ? 4 : top >= 100 ? 3 : top >= 10 ? 2 : 1;
  // N's digits in windows: A the first 9, B the next 8, C the 8 after; sticky, any digit past C.
  const sh = 9 - t;
  const up8 = P10[8 - sh]!;
  const mul = P10[sh]!;
  const l1 = n >= 2 ? limbs[n - 2]! : 0;
  const l2 = n >= 3 ? limbs[n - 3]! : 0;
  const l3 = n >= 4 ? limbs[n - 4]! : 0;
  const inv8 = INV10[8 - sh]!;
  const h1 = quot(l1, up8, inv8);
  const h2 = quot(l2, up8, inv8);
  const h3 = quot(l3, up8, inv8);
  const A = top * mul + h1;
  const B = (l1 - h1 * up8) * mul + h2;
  const C = (l2 - h2 * up8) * mul + h3;
  let sticky = l3 - h3 * up8 !== 0;
  for (let i = n - 5; i >= 0 && !sticky; i--) sticky = limbs[i] !== 0;
  // x = 0.d1d2... * 10^point; half a double ulp of x is 2^(b-1-s-53), m having b bits.
  const point = t + (n - 1) * 8 - s;
  const b = 32 - Math.clz32(m);
  // The bound in units of C's last digit place, 10^(point - 25).
  const bound = POW2_NEG[s + 54 - b]! * POW10[25 - point + 40]!;
  const lo = bound * (1 - MARGIN);
  const hi = bound * (1 + MARGIN);
  // Shortest p: from 17 down while the p-digit rounding stays within half an ulp of x. Below 10
  // digits (x a short decimal), String(x).
  let best = -1;
  let bestUp = false;
  let bestQ = 0;
  for (let r = 0; r <= 7; r++) {
    const unit = P10[r]!;
    const q = quot(B, unit, INV10[r]!);
    // The dropped digits (r of B, then C, then sticky) in units of C's last place: [tail, tail + 1).
    const tail = (B - q * unit) * 1e8 + C;
    const half = HALF_UNIT[r]!;
    if (tail === half || (tail === half - 1 && sticky)) return -1; // a tie, or too close to tell
    const up = tail >= half;
    const dist = up ? 2 * half - tail : tail;
    if (dist + 1 < lo) {
      best = r;
      bestUp = up;
      bestQ = q;
    } else if (dist - 1 > hi) break;
    else return -1;
  }
  if (best < 0 || best === 7) return -1;
  // The digits: A, then the 8 - best kept of B, plus one at the last when rounding up.
  let k = 17 - best;
  let a = A;
  let q = bestQ;
  let dp = point;
  if (bestUp && ++q === P10[8 - best]!) {
    q = 0;
    if (++a === 1e9) {
      a = 1e8;
      dp++;
    }
  }
  // Digits as two 8-digit halves written two at a time: a's first, then its last 8, then q's.
  const first = quot(a, 1e8, 1e-8);
  digits[0] = first;
  put8(a - first * 1e8, 1);
  put8(q * P10[best]!, 9);
  while (k > 1 && digits[k - 1] === 0) k--;
  if (bits >>> 31) out[pos++] = 45; // -
  if (dp >= k && dp <= 21) {
    for (let i = 0; i < k; i++) out[pos++] = 48 + digits[i]!;
    for (let i = k; i < dp; i++) out[pos++] = 48;
  } else if (dp > 0 && dp <= 21) {
    for (let i = 0; i < dp; i++) out[pos++] = 48 + digits[i]!;
    out[pos++] = 46;
    for (let i = dp; i < k; i++) out[pos++] = 48 + digits[i]!;
  } else if (dp > -6 && dp <= 0) {
    out[pos++] = 48;
    out[pos++] = 46;
    for (let i = dp; i < 0; i++) out[pos++] = 48;
    for (let i = 0; i < k; i++) out[pos++] = 48 + digits[i]!;
  } else {
    out[pos++] = 48 + digits[0]!;
    if (k > 1) {
      out[pos++] = 46;
      for (let i = 1; i < k; i++) out[pos++] = 48 + digits[i]!;
    }
    out[pos++] = 101; // e
    let e = dp - 1;
    out[pos++] = e < 0 ? 45 : 43;
    if (e < 0) e = -e;
    if (e >= 100) out[pos++] = 48 + Math.floor(e / 100);
    if (e >= 10) out[pos++] = 48 + (Math.floor(e / 10) % 10);
    out[pos++] = 48 + (e % 10);
  }
  return pos;
}

/** Most bytes one value takes, comma included: 26, as "-0.0000038146990846144035," (bits 0xb6800004) does. */
export const MAX_FLOAT32_JSON_BYTES = 26;

/** Writes an ASCII string at `pos`; the new position. */
function writeAscii(text: string, out: Uint8Array, pos: number): number {
  for (let i = 0; i < text.length; i++) out[pos++] = text.charCodeAt(i);
  return pos;
}

/**
 * Writes `data[from..to)` as JSON values separated by commas (no brackets) into `out` at `pos`
 * (room for MAX_FLOAT32_JSON_BYTES a value); returns the new position.
 */
export function writeFloat32Json(data: Float32Array, from: number, to: number, out: Uint8Array, pos: number): number {
  for (let i = from; i < to; i++) {
    if (i > from) out[pos++] = 44; // ,
    const x = data[i]!;
    const end = writeFast(x, out, pos);
    if (end >= 0) pos = end;
    else pos = writeAscii(Number.isFinite(x) ? String(x) : `"${String(x)}"`, out, pos);
  }
  return pos;
}

/** One float32 value as the JSON text writeFloat32Json writes for it. */
export function float32Json(x: number): string {
  const out = new Uint8Array(MAX_FLOAT32_JSON_BYTES);
  const end = writeFloat32Json(Float32Array.of(x), 0, 1, out, 0);
  return Buffer.from(out.buffer, 0, end).toString('latin1');
}
