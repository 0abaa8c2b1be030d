import { execFile, execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { createServer, type AddressInfo } from 'node:net';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { convModel, mlpModel } from '../../models/generate';
import { deleteKeys, startBrulee, type TestBrulee } from '../support/brulee';
import { startProc, stopAll } from '../support/procs';
import { ort, runDirect } from '../support/models';

const BIN = fileURLToPath(new URL('../../cli/brulee.mjs', import.meta.url));

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs the real `brulee` command as a child process. */
function brulee(args: string[], env: Record<string, string> = {}): Promise<Run> {
  return new Promise((resolve) => {
    execFile(process.execPath, [BIN, ...args], { env: { ...process.env, ...env }, timeout: 60_000 }, (err, stdout, stderr) => {
      const code = err ? (typeof err.code === 'number' ? err.code : 1) : 0;
      resolve({ code, stdout, stderr });
    });
  });
}

const MLP = { inputSize: 4, hidden: [16], outputSize: 3, seed: 5 };

describe('the brulee CLI against a real server', () => {
  let b: TestBrulee;
  let url: string;
  let dir: string;
  let modelPath: string;
  const cli = (...args: string[]) => brulee(args, { BRULEE_URL: url });

  beforeAll(async () => {
    b = await startBrulee();
    url = await b.listen();
    dir = mkdtempSync(join(tmpdir(), 'brulee-cli-'));
    modelPath = join(dir, 'mlp.onnx');
    writeFileSync(modelPath, mlpModel(MLP));
  });
  afterAll(async () => {
    await b?.destroy();
    rmSync(dir, { recursive: true, force: true });
  });

  it('registers, lists, describes, invokes (given input and --example), shows stats, removes', async () => {
    const reg = await cli('--json', 'register', 'mlp', modelPath, '--pin', '--timeout', '5000');
    expect(reg.stderr).toBe('');
    expect(reg.code).toBe(0);
    const fn = JSON.parse(reg.stdout);
    expect(fn).toMatchObject({ name: 'mlp', version: 1, created: true, options: { pinned: true, timeoutMs: 5000 } });
    expect(fn.signature.inputs).toEqual([{ name: 'x', type: 'float32', dims: ['batch', 4] }]);

    const ls = await cli('ls');
    expect(ls.code).toBe(0);
    expect(ls.stdout).toMatch(/^mlp\s+1\s+x:float32\[batch,4\]/m);
    expect(ls.stdout).toMatch(/yes\s*$/m); // pinned

    const data = [0.5, -1, 2, 0.25];
    const inv = await cli('--json', 'invoke', 'mlp', '--input', JSON.stringify({ x: { type: 'float32', dims: [1, 4], data } }));
    expect(inv.code).toBe(0);
    const r = JSON.parse(inv.stdout);
    const direct = await runDirect(mlpModel(MLP), { x: new ort.Tensor('float32', Float32Array.from(data), [1, 4]) });
    expect(r).toMatchObject({ function: 'mlp', version: 1, coldStart: true });
    expect(r.outputs.y.data).toEqual(Array.from(direct.y!.data as Float32Array));

    // --example: the signature's dims with the profiled batch (1), the profiler's ramp of floats.
    const inputFile = join(dir, 'in.json');
    writeFileSync(inputFile, JSON.stringify({ inputs: { x: { type: 'float32', dims: [2, 4], data: [1, 2, 3, 4, 5, 6, 7, 8] } } }));
    const [ex, fromFile] = await Promise.all([cli('--json', 'invoke', 'mlp', '--example'), cli('invoke', 'mlp', '--input', `@${inputFile}`)]);
    expect(ex.code).toBe(0);
    const exOut = JSON.parse(ex.stdout);
    const ramp = [0, 1, 2, 3].map((i) => ((i * 7919) % 1000) / 1000 - 0.5);
    const directEx = await runDirect(mlpModel(MLP), { x: new ort.Tensor('float32', Float32Array.from(ramp), [1, 4]) });
    expect(exOut.outputs.y.data).toEqual(Array.from(directEx.y!.data as Float32Array));
    expect(fromFile.code).toBe(0);
    expect(fromFile.stdout).toMatch(/^y: float32\[2, 3\] \[/m);
    expect(fromFile.stdout).toMatch(/^warm on node-/m);

    const desc = await cli('describe', 'mlp');
    expect(desc.stdout).toContain('x: float32[batch, 4]');
    expect(desc.stdout).toMatch(/invocations 3 \(cold 1, warm 2, failed 0\), loads 1/);

    const stats = await cli('--json', 'stats');
    expect(JSON.parse(stats.stdout).functions.mlp).toMatchObject({ invocations: 3, coldStarts: 1, warmHits: 2, loads: 1 });
    const statsText = await cli('stats');
    expect(statsText.stdout).toMatch(/^mlp\s+1\s+3\s+1\s+2\s+1\s+0\s+66\.7%/m);

    const rm = await cli('rm', 'mlp');
    expect(rm.stdout).toMatch(/^deleted mlp \(1 version;/);
    expect((await b.json('GET', '/functions')).body.functions).toEqual([]);
  });

  it('says what went wrong, with exit codes: 1 the server refused, 2 usage, 3 no server', async () => {
    const missing = await cli('describe', 'nope');
    expect(missing.code).toBe(1);
    expect(missing.stderr).toMatch(/^brulee: FUNCTION_NOT_FOUND: no function named "nope"/);

    const badInput = await cli('invoke', 'nope', '--input', '{not json');
    expect(badInput.code).toBe(2);
    expect(badInput.stderr).toMatch(/--input is not valid JSON/);

    const both = await cli('invoke', 'nope');
    expect(both.code).toBe(2);
    expect(both.stderr).toMatch(/give one of --input JSON\|@file or --example/);

    const unknown = await cli('frobnicate');
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toMatch(/unknown command 'frobnicate'/);

    const closed = await new Promise<number>((resolve) => {
      const srv = createServer().listen(0, '127.0.0.1', () => {
        const port = (srv.address() as AddressInfo).port;
        srv.close(() => resolve(port));
      });
    });
    const down = await brulee(['ls', '--url', `http://127.0.0.1:${closed}`]);
    expect(down.code).toBe(3);
    expect(down.stderr).toContain(`no brulee server answered at http://127.0.0.1:${closed} (ECONNREFUSED)`);

    // With --json, each of these is JSON on stderr, {"error": {"code", "message"}}, stdout empty, the same exit code.
    const asJson = async (r: Promise<Run>) => {
      const { code, stdout, stderr } = await r;
      return { code, stdout, stderr: JSON.parse(stderr) as unknown };
    };
    expect(await asJson(cli('--json', 'describe', 'nope'))).toEqual({ code: 1, stdout: '', stderr: { error: { code: 'FUNCTION_NOT_FOUND', message: expect.stringMatching(/^no function named "nope"/) } } });
    expect(await asJson(cli('--json', 'invoke', 'nope'))).toEqual({ code: 2, stdout: '', stderr: { error: { code: 'USAGE', message: 'give one of --input JSON|@file or --example' } } });
    expect(await asJson(cli('--json', 'frobnicate'))).toEqual({ code: 2, stdout: '', stderr: { error: { code: 'USAGE', message: "unknown command 'frobnicate'" } } });
    expect(await asJson(brulee(['--json', 'ls', '--url', `http://127.0.0.1:${closed}`]))).toEqual({
      code: 3, stdout: '', stderr: { error: { code: 'UNREACHABLE', message: expect.stringContaining(`no brulee server answered at http://127.0.0.1:${closed} (ECONNREFUSED)`) } },
    });
  });

  it('brulee status: a completed invocation as invoke prints it, a failed one as the error it is (exit 1)', async () => {
    expect((await b.put('st-mlp', mlpModel(MLP))).status).toBe(201);
    expect((await b.put('st-conv', convModel(), 'profileDims=img:1x1x8x8')).status).toBe(201);
    const submit = async (name: string, inputs: object) => (await b.json('POST', `/functions/${name}/invoke?async=true`, { inputs })).body.id as string;
    const done = async (id: string) => {
      for (let i = 0; i < 200 && ['waiting', 'active'].includes((await b.json('GET', `/invocations/${id}`)).body.status); i++) await new Promise((r) => setTimeout(r, 50));
    };
    const ok = await submit('st-mlp', { x: { type: 'float32', dims: [1, 4], data: [1, 2, 3, 4] } });
    // A 3x3 convolution on a 1x1 image: onnxruntime refuses it on the node.
    const bad = await submit('st-conv', { img: { type: 'float32', dims: [1, 1, 1, 1], data: [0.5] } });
    await Promise.all([done(ok), done(bad)]);

    const completed = await cli('status', ok);
    expect(completed.code).toBe(0);
    expect(completed.stdout).toMatch(/^y: float32\[1, 3\] \[/m);
    expect(completed.stdout).toMatch(/^cold on node-\S+: \(queue /m);
    expect((await cli('--json', 'status', ok)).code).toBe(0);

    const failed = await cli('status', bad);
    expect(failed.code).toBe(1);
    expect(failed.stderr).toMatch(/^brulee: INFERENCE_FAILED: onnxruntime could not run the model on these inputs/);
    const failedJson = await cli('--json', 'status', bad);
    expect(failedJson.code).toBe(1);
    expect(JSON.parse(failedJson.stdout)).toMatchObject({ id: bad, status: 'failed', error: { code: 'INFERENCE_FAILED' } });
    expect(JSON.parse(failedJson.stderr)).toEqual({ error: { code: 'INFERENCE_FAILED', message: expect.stringMatching(/^onnxruntime could not run the model on these inputs/) } });
    // Their counts go with them: the tests after this one count the server's calls.
    for (const name of ['st-mlp', 'st-conv']) expect((await b.json('DELETE', `/functions/${name}`)).status).toBe(200);
  });

  it('brulee model writes the same bytes as the generator the tests use', async () => {
    const out = join(dir, 'gen.onnx');
    const r = await brulee(['model', 'mlp', '--input', '4', '--hidden', '16', '--output', '3', '--seed', '5', '--out', out]);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('input  x: float32[batch, 4]');
    expect(new Uint8Array(readFileSync(out))).toEqual(mlpModel(MLP));
    const bad = await brulee(['model', 'mlp', '--hidden', 'x']);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/--hidden: not an integer: x/);
  });

  it('brulee top draws live frames in a terminal (tmux) and quits on Ctrl-C', async () => {
    await b.put('top-mlp', mlpModel(MLP));
    const session = `brulee-top-${process.pid}`;
    const tmux = (...args: string[]) => execFileSync('tmux', args, { encoding: 'utf8' });
    const exitFile = join(dir, 'top.exit');
    tmux('new-session', '-d', '-s', session, '-x', '120', '-y', '40', `${process.execPath} ${BIN} --url ${url} top --interval 300; echo $? > ${exitFile}; sleep 30`);
    try {
      const x = { type: 'float32', dims: [1, 4], data: [1, 2, 3, 4] };
      for (let i = 0; i < 5; i++) expect((await b.invoke('top-mlp', { x })).status).toBe(200);
      let screen = '';
      // A frame with rates (the second one on) after the 5 calls.
      for (let i = 0; i < 100 && !(/totals: invocations 5, cold starts 1/.test(screen) && /^invocations\/s [\d.]+ /m.test(screen)); i++) {
        await new Promise((r) => setTimeout(r, 200));
        screen = tmux('capture-pane', '-p', '-t', session);
      }
      expect(screen).toMatch(/^brulee top {2}http:\/\/127\.0\.0\.1:\d+/m);
      expect(screen).toContain('totals: invocations 5, cold starts 1, evictions 0');
      expect(screen).toMatch(new RegExp(`^node node-${b.namespace} \\(cremebrulee\\)\\s+\\[#*\\.*\\]`, 'm'));
      expect(screen).toMatch(/^\s+top-mlp\s+[\d.]+ (B|KiB|MiB)\s+resident\b/m); // what this process measured it holding: noise moves the unit
      expect(screen).toMatch(/^invocations\/s [\d.]+ {3}cold starts\/s [\d.]+ /m);
      tmux('send-keys', '-t', session, 'C-c');
      let code = '';
      for (let i = 0; i < 50 && code === ''; i++) {
        await new Promise((r) => setTimeout(r, 100));
        try {
          code = readFileSync(exitFile, 'utf8').trim();
        } catch {}
      }
      expect(code).toBe('0');
    } finally {
      tmux('kill-session', '-t', session);
    }
  });
});

describe('brulee serve', () => {
  it('runs a server as npm start does: it registers, answers as onnxruntime does, and exits 0 on SIGTERM', async () => {
    const prefix = `serve${process.pid}`;
    const p = await startProc('serve', 'all', { REDIS_URL: inject('redisUrl'), KEY_PREFIX: prefix }, { argv: [BIN, 'serve'] });
    try {
      const reg = await fetch(`${p.base}/functions/serve-mlp`, { method: 'PUT', body: mlpModel(MLP), headers: { 'content-type': 'application/octet-stream' } });
      expect(reg.status).toBe(201);
      const data = [0.5, -1, 2, 0.25];
      const inv = await fetch(`${p.base}/functions/serve-mlp/invoke`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ inputs: { x: { type: 'float32', dims: [1, 4], data } } }) });
      const r = (await inv.json()) as { outputs: { y: { data: number[] } }; coldStart: boolean };
      const direct = await runDirect(mlpModel(MLP), { x: new ort.Tensor('float32', Float32Array.from(data), [1, 4]) });
      expect(r.coldStart).toBe(true);
      expect(r.outputs.y.data).toEqual(Array.from(direct.y!.data as Float32Array));
      p.child.kill('SIGTERM');
      expect(await p.exited).toBe(0);
    } finally {
      await stopAll([p]);
      await deleteKeys(prefix);
    }
  }, 60_000);
});

describe('the brulee CLI against a server with keys', () => {
  const ADMIN = 'admin-key-0123456789';
  let b: TestBrulee;
  let url: string;
  let dir: string;
  let modelPath: string;
  beforeAll(async () => {
    b = await startBrulee({ API_KEY: ADMIN });
    url = await b.listen();
    dir = mkdtempSync(join(tmpdir(), 'brulee-cli-keys-'));
    modelPath = join(dir, 'mlp.onnx');
    writeFileSync(modelPath, mlpModel(MLP));
  });
  afterAll(async () => {
    await b?.destroy();
    rmSync(dir, { recursive: true, force: true });
  });

  it('a refused registration says only why (no "profiling" before it), and with --json says it as JSON', async () => {
    const needs = 'this call changes state and needs the header Authorization: Bearer <API_KEY>';
    expect(await brulee(['register', 'k', modelPath], { BRULEE_URL: url })).toEqual({ code: 1, stdout: '', stderr: `brulee: UNAUTHORIZED: ${needs} (pass --api-key or set BRULEE_API_KEY)\n` });
    const json = await brulee(['--json', 'register', 'k', modelPath], { BRULEE_URL: url });
    expect({ ...json, stderr: JSON.parse(json.stderr) }).toEqual({ code: 1, stdout: '', stderr: { error: { code: 'UNAUTHORIZED', message: `${needs} (pass --api-key or set BRULEE_API_KEY)` } } });
    const wrong = await brulee(['--json', 'register', 'k', modelPath], { BRULEE_URL: url, BRULEE_API_KEY: 'wrong-key-0123456789' });
    expect({ ...wrong, stderr: JSON.parse(wrong.stderr) }).toEqual({
      code: 1, stdout: '', stderr: { error: { code: 'FORBIDDEN', message: 'the key in the Authorization header is wrong (this call needs API_KEY) (check --api-key / BRULEE_API_KEY)' } },
    });
    expect((await brulee(['--json', 'register', 'k', modelPath], { BRULEE_URL: url, BRULEE_API_KEY: ADMIN })).code).toBe(0);
  });
});
