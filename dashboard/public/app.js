// The dashboard: polls /stats every second, keeps rates in live charts, and renders one of two
// views: the overview (#/) or a function's page (#/functions/NAME).
import { api, ApiError, getKey, setKey, uploadModel } from './api.js';
import { LiveChart } from './charts.js';
import { bytes, evictionsTable, functionsTable, h, memoryBar, ms, nodesTable, pct } from './views.js';

const POLL_MS = 1000;
const $ = (id) => document.getElementById(id);

/** Cluster totals and per-function totals at the previous poll, for rates. */
let prev;
let metas = new Map();
let stats;
let view = { kind: 'none' };

function notice(text, kind = 'error') {
  const el = $('notice');
  el.textContent = text;
  el.className = kind;
  el.hidden = !text;
}

/** Errors that need the key ask for it; others are shown as they are. */
function showError(e) {
  if (e instanceof ApiError && (e.status === 401 || e.status === 403)) {
    notice(`${e.message} — enter the key at the top right, then try again.`);
    $('key').focus();
    $('key').classList.add('ask');
  } else notice(e instanceof Error ? e.message : String(e));
}

function totals(s) {
  const t = { invocations: 0, coldStarts: 0, loadWaitMs: 0, execMs: 0, fns: {} };
  for (const [name, f] of Object.entries(s.functions)) {
    t.invocations += f.invocations;
    t.coldStarts += f.coldStarts;
    t.loadWaitMs += f.loadWaitMsTotal ?? 0;
    t.execMs += f.execMsTotal ?? 0;
    t.fns[name] = f;
  }
  return t;
}

// ---------------------------------------------------------------------------
// overview

function overview() {
  const charts = h('div', { class: 'charts' });
  const cells = ['rate', 'share', 'queue'].map((k) => h('div', { class: 'chart', id: `chart-${k}` }));
  charts.append(...cells);
  const drop = dropZone();
  const root = h(
    'div',
    {},
    h('section', { class: 'summary', id: 'summary' }),
    charts,
    h('h2', {}, 'Memory by node'),
    h('section', { id: 'memory' }),
    h('h2', {}, 'Functions'),
    drop,
    h('section', { id: 'functions-box' }),
    h('h2', {}, 'Nodes'),
    h('section', { id: 'nodes-box' }),
    h('h2', {}, 'Recent evictions'),
    h('section', { id: 'evictions-box' }),
  );
  $('view').replaceChildren(root);
  const c = {
    rate: new LiveChart(cells[0], { title: 'invocations and cold starts per second', series: ['invocations/s', 'cold starts/s'] }),
    share: new LiveChart(cells[1], { title: 'cold-start share and load delay (% of exec time)', series: ['cold-start share', 'load delay / exec'], unit: '%' }),
    queue: new LiveChart(cells[2], { title: 'queue depth', series: ['waiting', 'active', 'delayed'] }),
  };
  return {
    kind: 'overview',
    update(s, rates) {
      if (rates) {
        c.rate.push(rates.t, [rates.inv, rates.cold]);
        c.share.push(rates.t, [rates.coldShare, rates.loadDelay]);
      }
      c.queue.push(Date.now() / 1000, [s.queue.waiting ?? 0, s.queue.active ?? 0, s.queue.delayed ?? 0]);
      const t = totals(s);
      $('summary').replaceChildren(
        ...[
          ['functions', Object.keys(s.functions).length],
          ['invocations', t.invocations],
          ['cold starts', t.coldStarts],
          ['cold share', pct(t.invocations ? t.coldStarts / t.invocations : null)],
          ['load delay / exec', pct(t.execMs ? t.loadWaitMs / t.execMs : null)],
          ['nodes', s.nodes.length],
        ].map(([k, v]) => h('div', { class: 'stat', 'data-stat': k }, h('div', { class: 'v' }, v), h('div', { class: 'k' }, k))),
      );
      $('memory').replaceChildren(...(s.nodes.length ? s.nodes.map(memoryBar) : [h('p', { class: 'muted' }, 'no live node')]));
      $('functions-box').replaceChildren(functionsTable(s, metas));
      $('nodes-box').replaceChildren(nodesTable(s));
      $('evictions-box').replaceChildren(evictionsTable(s));
    },
  };
}

function dropZone() {
  const file = h('input', { type: 'file', accept: '.onnx', id: 'model-file', hidden: true });
  const name = h('input', { id: 'model-name', placeholder: 'function name (default: file name)', size: 28 });
  const pin = h('input', { type: 'checkbox', id: 'model-pin' });
  const progress = h('progress', { id: 'upload-progress', max: 1, value: 0, hidden: true });
  const status = h('span', { id: 'upload-status', class: 'muted' });
  const zone = h(
    'div',
    { class: 'drop', id: 'drop' },
    h('b', {}, 'Register a model: '),
    'drop an .onnx file here or ',
    h('a', { href: '#', onclick: (e) => (e.preventDefault(), file.click()) }, 'choose one'),
    ' · ',
    name,
    h('label', {}, pin, ' pin'),
    progress,
    status,
  );
  const send = async (f) => {
    const fn = (name.value.trim() || f.name.replace(/\.onnx$/i, '')).replace(/[^A-Za-z0-9._-]/g, '-');
    progress.hidden = false;
    notice('');
    try {
      const r = await uploadModel(fn, f, pin.checked ? 'pinned=true' : '', (phase, x) => {
        progress.value = x;
        status.textContent = phase === 'upload' ? `uploading ${f.name}: ${pct(x)}` : `profiling ${fn} (load, run, measure memory)…`;
      });
      status.textContent = `${r.created ? 'registered' : r.newVersion ? 'new version of' : 'unchanged:'} ${r.name} v${r.version}: resident ${bytes(r.profile.residentBytes)}, load ${ms(r.profile.loadMs)}, exec ${ms(r.profile.execMs)}`;
      await refreshMetas();
    } catch (e) {
      status.textContent = '';
      showError(e);
    } finally {
      progress.hidden = true;
      file.value = '';
    }
  };
  file.addEventListener('change', () => file.files[0] && send(file.files[0]));
  zone.addEventListener('dragover', (e) => (e.preventDefault(), zone.classList.add('over')));
  zone.addEventListener('dragleave', () => zone.classList.remove('over'));
  zone.addEventListener('drop', (e) => {
    e.preventDefault();
    zone.classList.remove('over');
    const f = e.dataTransfer.files[0];
    if (f) send(f);
  });
  zone.append(file);
  return zone;
}

// ---------------------------------------------------------------------------
// a function's page

function functionPage(name) {
  const info = h('section', { id: 'fn-info' }, h('p', { class: 'muted' }, 'loading…'));
  const cells = ['fn-rate', 'fn-lat'].map((k) => h('div', { class: 'chart', id: `chart-${k}` }));
  const input = h('textarea', { id: 'try-input', rows: 8, spellcheck: 'false' });
  const answer = h('pre', { id: 'try-answer', class: 'answer' });
  const tryIt = h(
    'section',
    { class: 'try' },
    h('h2', {}, 'Try it'),
    h('p', { class: 'muted' }, 'The inputs as JSON, filled with a valid example from the signature.'),
    input,
    h(
      'div',
      {},
      h('button', { id: 'try-invoke', onclick: () => invoke() }, 'Invoke'),
      ' ',
      h('button', { id: 'try-example', onclick: () => fillExample() }, 'Example input'),
      ' ',
      h('button', { id: 'fn-delete', class: 'danger', onclick: () => remove() }, 'Delete function'),
    ),
    answer,
  );
  const charts = h('div', { class: 'charts' }, cells);
  $('view').replaceChildren(h('div', {}, h('p', {}, h('a', { href: '#/' }, '← overview')), h('h1', {}, name), info, charts, tryIt));
  const c = {
    rate: new LiveChart(cells[0], { title: `${name}: invocations and cold starts per second`, series: ['invocations/s', 'cold starts/s'] }),
    lat: new LiveChart(cells[1], { title: `${name}: p50 load and exec`, series: ['load p50', 'exec p50'], unit: ' ms' }),
  };
  const path = `/functions/${encodeURIComponent(name)}`;

  async function fillExample() {
    try {
      const ex = await api('GET', `${path}/example`);
      input.value = JSON.stringify(ex.inputs, null, 1);
    } catch (e) {
      showError(e);
    }
  }
  async function invoke() {
    let inputs;
    try {
      inputs = JSON.parse(input.value);
    } catch (e) {
      notice(`the input is not valid JSON: ${e.message}`);
      return;
    }
    answer.textContent = 'invoking…';
    try {
      const r = await api('POST', `${path}/invoke`, { inputs: inputs.inputs ?? inputs });
      const t = r.timings;
      answer.replaceChildren(
        h('div', { id: 'try-timing', class: r.coldStart ? 'cold' : 'warm' }, `${r.coldStart ? 'cold start' : 'warm'} on ${r.node}: total ${ms(t.totalMs)} (queue ${ms(t.queueMs)}, load ${ms(t.loadMs)}, exec ${ms(t.execMs)})`),
        h('code', { id: 'try-outputs' }, JSON.stringify(r.outputs)),
      );
      notice('');
    } catch (e) {
      answer.textContent = '';
      showError(e);
    }
  }
  async function remove() {
    if (!confirm(`Delete ${name}? It is unloaded everywhere.`)) return;
    try {
      await api('DELETE', path);
      location.hash = '#/';
    } catch (e) {
      showError(e);
    }
  }
  async function load() {
    const fn = await api('GET', path);
    const p = fn.profile;
    const sig = (xs) => xs.map((x) => h('li', {}, h('code', {}, `${x.name}: ${x.type}[${x.dims.join(', ')}]`)));
    info.replaceChildren(
      h(
        'div',
        { class: 'cols' },
        h('div', {}, h('h3', {}, 'Signature'), h('p', {}, 'inputs'), h('ul', {}, sig(fn.signature.inputs)), h('p', {}, 'outputs'), h('ul', {}, sig(fn.signature.outputs))),
        h(
          'div',
          {},
          h('h3', {}, 'Measured profile'),
          h(
            'ul',
            { id: 'fn-profile' },
            h('li', {}, `file ${bytes(p.fileBytes)}, resident ${bytes(p.residentBytes)}`, p.memoryFactor == null ? h('span', { class: 'muted', title: p.memoryNote ?? '' }, ' (file under 1 MiB: mostly onnxruntime overhead, no memory factor)') : ` (${p.memoryFactor.toFixed(2)}× the file)`),
            h('li', {}, `load ${ms(p.loadMs)}, exec ${p.execMs == null ? `unknown: ${p.execError}` : ms(p.execMs)}`),
            h('li', {}, `the cache charges ${bytes(fn.sizeBytes)}${fn.options.pinned ? ', pinned' : ''}`),
            h('li', {}, `resident on: ${fn.residentOn.join(', ') || 'no node'}`),
          ),
        ),
        h('div', {}, h('h3', {}, 'Versions'), h('ul', {}, fn.versions.map((v) => h('li', {}, `v${v.version} ${v.sha256.slice(0, 12)} ${bytes(v.fileBytes)} ${new Date(v.createdAt).toLocaleString()}`)))),
      ),
    );
  }
  load().then(fillExample, (e) => {
    // No such function (deleted, or a mistyped link): say so in place of its page, with nothing to try or delete.
    if (!(e instanceof ApiError && e.code === 'FUNCTION_NOT_FOUND')) return showError(e);
    info.replaceChildren(h('p', { id: 'fn-missing' }, e.message, ' ', h('a', { href: '#/' }, 'back to the overview')));
    charts.remove();
    tryIt.remove();
  });
  return {
    kind: 'function',
    name,
    update(s, rates) {
      const f = s.functions[name];
      if (!f) return;
      if (rates && rates.fns[name]) c.rate.push(rates.t, [rates.fns[name].inv, rates.fns[name].cold]);
      c.lat.push(Date.now() / 1000, [f.loadMs.p50, f.execMs.p50]);
    },
  };
}

// ---------------------------------------------------------------------------

async function refreshMetas() {
  const { functions } = await api('GET', '/functions');
  metas = new Map(functions.map((f) => [f.name, f]));
}

function rates(s) {
  const now = Date.now();
  const t = totals(s);
  const p = prev;
  prev = { at: now, ...t };
  if (!p) return undefined;
  const dt = (now - p.at) / 1000;
  const dInv = t.invocations - p.invocations;
  const dCold = t.coldStarts - p.coldStarts;
  const dExec = t.execMs - p.execMs;
  const fns = {};
  for (const [name, f] of Object.entries(t.fns)) {
    const q = p.fns[name];
    if (q) fns[name] = { inv: (f.invocations - q.invocations) / dt, cold: (f.coldStarts - q.coldStarts) / dt };
  }
  return {
    t: now / 1000,
    inv: dInv / dt,
    cold: dCold / dt,
    coldShare: dInv > 0 ? (100 * dCold) / dInv : 0,
    loadDelay: dExec > 0 ? (100 * (t.loadWaitMs - p.loadWaitMs)) / dExec : 0,
    fns,
  };
}

function route() {
  const m = /^#\/functions\/(.+)$/.exec(location.hash);
  view = m ? functionPage(decodeURIComponent(m[1])) : overview();
  if (stats) view.update(stats, undefined);
}

async function poll() {
  try {
    stats = await api('GET', '/stats');
    if (metas.size !== Object.keys(stats.functions).length) await refreshMetas();
    view.update(stats, rates(stats));
    $('status').textContent = `live · ${new Date().toLocaleTimeString()}`;
    $('status').className = 'ok';
  } catch (e) {
    $('status').textContent = e instanceof ApiError && e.status === 401 ? 'needs a key to read' : `no answer: ${e.message}`;
    $('status').className = 'bad';
    if (e instanceof ApiError && (e.status === 401 || e.status === 403)) showError(e);
  } finally {
    setTimeout(poll, POLL_MS);
  }
}

$('key').value = getKey();
$('key').addEventListener('change', () => {
  setKey($('key').value.trim());
  $('key').classList.remove('ask');
  notice('');
});
window.addEventListener('hashchange', route);
route();
poll();
