import { randomBytes } from 'node:crypto';

/**
 * JSON.parse, except that integer literals beyond 2^53 come back as exact BigInts instead of
 * rounded numbers, so INT64/UINT64 tensors sent as JSON numbers (as tritonclient and KServe's
 * clients send them) keep every digit. Other values are JSON.parse's own.
 *
 * The common case costs JSON.parse and one walk over the parsed values: every integer literal
 * past 2^53 parses to a number of magnitude 2^53 or more, so only a body holding such a number
 * takes the slow path, which rewrites each unsafe integer literal (outside strings) into a marked
 * string and revives it as a BigInt.
 */

const LIMIT = 2 ** 53;

/** Whether any number in a parsed value has magnitude 2^53 or more (iterative: no stack overflow). */
function hasHugeNumber(root: unknown): boolean {
  const stack: unknown[] = [root];
  while (stack.length > 0) {
    const v = stack.pop();
    if (typeof v === 'number') {
      if (v >= LIMIT || v <= -LIMIT) return true;
    } else if (Array.isArray(v)) {
      for (let i = 0; i < v.length; i++) {
        const x: unknown = v[i];
        if (typeof x === 'number') {
          if (x >= LIMIT || x <= -LIMIT) return true;
        } else if (typeof x === 'object' && x !== null) stack.push(x);
      }
    } else if (typeof v === 'object' && v !== null) {
      for (const x of Object.values(v)) stack.push(x);
    }
  }
  return false;
}

export function parseJsonExact(text: string): unknown {
  const fast: unknown = JSON.parse(text);
  if (!hasHugeNumber(fast)) return fast;
  // A nonce per call, so no string a client sends can pass for a marker.
  const mark = `\u0000${randomBytes(9).toString('base64')}:`;
  let out = '';
  let last = 0;
  let found = false;
  const n = text.length;
  for (let i = 0; i < n; i++) {
    const c = text.charCodeAt(i);
    if (c === 34 /* " */) {
      // Skip the string, escapes included.
      for (i++; i < n; i++) {
        const d = text.charCodeAt(i);
        if (d === 92 /* \ */) i++;
        else if (d === 34) break;
      }
      continue;
    }
    if (c === 45 /* - */ || (c >= 48 && c <= 57)) {
      let j = i + 1;
      while (j < n) {
        const d = text.charCodeAt(j);
        if ((d >= 48 && d <= 57) || d === 46 || d === 101 || d === 69 || d === 43 || d === 45) j++;
        else break;
      }
      const token = text.slice(i, j);
      if (/^-?\d+$/.test(token) && !Number.isSafeInteger(Number(token))) {
        out += `${text.slice(last, i)}"${mark.replace('\u0000', '\\u0000')}${token}"`;
        last = j;
        found = true;
      }
      i = j - 1;
    }
  }
  if (!found) return fast;
  out += text.slice(last);
  return JSON.parse(out, (_key, value: unknown) =>
    typeof value === 'string' && value.startsWith(mark) ? BigInt(value.slice(mark.length)) : value,
  );
}

/**
 * The first key given twice in the object that is the value of the top-level key `field` (v1's
 * `"inputs"`), which JSON.parse resolves silently to its last value; `kept` are the keys it kept.
 * Cheap in the usual case: in a body with no escape, a key whose quoted form occurs once in the
 * text cannot be there twice (a native indexOf or two per key); only otherwise is the text scanned.
 */
export function duplicateKeyIn(text: string, field: string, kept: readonly string[]): string | undefined {
  if (!text.includes('\\')) {
    const twice = (k: string) => {
      const q = JSON.stringify(k);
      const at = text.indexOf(q);
      return at >= 0 && text.indexOf(q, at + q.length) >= 0;
    };
    if (!kept.some(twice)) return undefined;
  }
  // Keys are read where an object expects one: after its "{" or a "," in it.
  const seen = new Set<string>();
  const isObject: boolean[] = [];
  let expectKey = false;
  let top: string | undefined;
  let inField = false;
  const n = text.length;
  for (let i = 0; i < n; i++) {
    const c = text.charCodeAt(i);
    if (c === 34 /* " */) {
      const start = i;
      for (i++; i < n; i++) {
        const d = text.charCodeAt(i);
        if (d === 92 /* \ */) i++;
        else if (d === 34) break;
      }
      if (!expectKey) continue;
      expectKey = false;
      const key = JSON.parse(text.slice(start, i + 1)) as string;
      if (isObject.length === 1) top = key;
      else if (inField && isObject.length === 2) {
        if (seen.has(key)) return key;
        seen.add(key);
      }
    } else if (c === 123 /* { */ || c === 91 /* [ */) {
      isObject.push(c === 123);
      expectKey = c === 123;
      if (isObject.length === 2 && c === 123 && top === field) inField = true;
    } else if (c === 125 /* } */ || c === 93 /* ] */) {
      isObject.pop();
      if (isObject.length < 2) inField = false;
      expectKey = false;
    } else if (c === 44 /* , */) {
      expectKey = isObject[isObject.length - 1] === true;
    }
  }
  return undefined;
}
