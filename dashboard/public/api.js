// HTTP calls to brulee, with the key the user typed (kept for this tab only).
const KEY = 'brulee-key';

export function getKey() {
  return sessionStorage.getItem(KEY) ?? '';
}

export function setKey(k) {
  if (k) sessionStorage.setItem(KEY, k);
  else sessionStorage.removeItem(KEY);
}

function headers(extra = {}) {
  const k = getKey();
  return k ? { ...extra, authorization: `Bearer ${k}` } : extra;
}

/** An error the server answered: `{error: {code, message}}`. */
export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

async function parse(res) {
  const text = await res.text();
  let body;
  try {
    body = text ? JSON.parse(text) : undefined;
  } catch {
    body = text;
  }
  if (!res.ok) {
    const e = body && body.error;
    throw new ApiError(res.status, e && e.code ? e.code : `HTTP ${res.status}`, e && e.message ? e.message : typeof e === 'string' ? e : res.statusText);
  }
  return body;
}

export async function api(method, path, body) {
  const init = { method, headers: headers(body === undefined ? {} : { 'content-type': 'application/json' }) };
  if (body !== undefined) init.body = JSON.stringify(body);
  return parse(await fetch(path, init));
}

/**
 * PUTs a model file with upload progress (fetch has none): `onProgress(phase, fraction)`, phase
 * `upload` then `profiling` (the server inspects and profiles before it answers).
 */
export function uploadModel(name, file, query, onProgress) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open('PUT', `/functions/${encodeURIComponent(name)}${query ? `?${query}` : ''}`);
    for (const [k, v] of Object.entries(headers({ 'content-type': 'application/octet-stream' }))) xhr.setRequestHeader(k, v);
    xhr.upload.onprogress = (e) => onProgress('upload', e.lengthComputable ? e.loaded / e.total : 0);
    xhr.upload.onload = () => onProgress('profiling', 1);
    xhr.onerror = () => reject(new ApiError(0, 'NETWORK', 'the upload failed: no answer from the server'));
    xhr.onload = () => {
      parse(new Response(xhr.responseText, { status: xhr.status })).then(resolve, reject);
    };
    xhr.send(file);
  });
}
