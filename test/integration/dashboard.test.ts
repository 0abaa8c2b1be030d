import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium, type Browser, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mlpModel } from '../../models/generate';
import { startBrulee, type TestBrulee } from '../support/brulee';
import { ort, runDirect } from '../support/models';

/** Debian's chromium (.ci/run installs it), headless, with nothing reaching the network but the page. */
export async function launchChromium(): Promise<Browser> {
  return chromium.launch({ executablePath: '/usr/bin/chromium', headless: true, args: ['--no-sandbox', '--disable-background-networking'] });
}

const A = { inputSize: 4, hidden: [16], outputSize: 3, seed: 1 };
const B = { inputSize: 8, hidden: [32, 32], outputSize: 2, seed: 2 };

describe('the dashboard in a real browser', () => {
  let b: TestBrulee;
  let url: string;
  let browser: Browser;
  let page: Page;
  const shots = mkdtempSync(join(tmpdir(), 'brulee-dashboard-'));
  const errors: string[] = [];
  const offsite: string[] = [];

  beforeAll(async () => {
    b = await startBrulee();
    url = await b.listen();
    browser = await launchChromium();
    page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
    page.on('pageerror', (e) => errors.push(e.message));
    page.on('request', (r) => {
      if (!r.url().startsWith(url)) offsite.push(r.url());
    });
  });
  afterAll(async () => {
    await browser?.close();
    await b?.destroy();
  });

  it('shows registrations, invocation counts, memory by model and live charts', async () => {
    await page.goto(url);
    await page.waitForSelector('#status.ok');

    // One model through the page's file picker (the same path as dropping it), one over HTTP.
    const file = join(shots, 'alpha.onnx');
    writeFileSync(file, mlpModel(A));
    await page.setInputFiles('#model-file', file);
    await expect.poll(() => page.locator('#upload-status').textContent(), { timeout: 30_000 }).toMatch(/^registered alpha v1: resident [\d.]+ (B|KiB|MiB),/);
    expect((await b.put('beta', mlpModel(B))).status).toBe(201);

    const xa = { type: 'float32', dims: [1, 4], data: [1, 2, 3, 4] };
    const xb = { type: 'float32', dims: [1, 8], data: [1, 2, 3, 4, 5, 6, 7, 8] };
    for (let i = 0; i < 6; i++) expect((await b.invoke('alpha', { x: xa })).status).toBe(200);
    for (let i = 0; i < 3; i++) expect((await b.invoke('beta', { x: xb })).status).toBe(200);

    // The functions table: invocations, loads, cold starts, hit ratio, per row.
    const row = (name: string) => page.locator('#functions tbody tr', { has: page.locator(`a[href="#/functions/${name}"]`) });
    await expect.poll(async () => (await row('alpha').locator('td').allTextContents()).slice(4, 8), { timeout: 10_000 }).toEqual(['6', '1', '1', '83.3%']);
    await expect.poll(async () => (await row('beta').locator('td').allTextContents()).slice(4, 8), { timeout: 10_000 }).toEqual(['3', '1', '1', '66.7%']);
    expect(await page.locator('[data-stat="invocations"] .v').textContent()).toBe('9');
    expect(await page.locator('[data-stat="cold starts"] .v').textContent()).toBe('2');

    // Memory: the node's bar holds one segment per resident model, each titled with its name. The bar
    // comes from the node's heartbeat, which a load publishes just after its call's answer and
    // counts (queue/held-writes.ts), so a poll of /stats can see the counts a beat before the model.
    const segments = () => page.locator(`.mem[data-node="node-${b.namespace}"] .mem-bar span`).evaluateAll((els) => els.map((e) => e.getAttribute('title')?.split(':')[0]).sort());
    await expect.poll(segments, { timeout: 10_000 }).toEqual(['alpha', 'beta']);

    // The rate chart has drawn points since the invocations: uPlot redrew, and its data shows calls.
    await expect
      .poll(() => page.locator('#chart-rate').evaluate((el) => {
        const c = (el as unknown as { __chart: { drawn: number; data: number[][] } }).__chart;
        return { drawn: c.drawn > 1, points: c.data[0]!.length > 1, calls: c.data[1]!.reduce((a, x) => a + x, 0) > 0 };
      }), { timeout: 10_000 })
      .toEqual({ drawn: true, points: true, calls: true });
    expect(await page.locator('#chart-rate canvas').count()).toBe(1);
    await page.screenshot({ path: join(shots, 'overview.png'), fullPage: true });
    console.log(`dashboard screenshots in ${shots}`);

    // A function's page: its profile, "try it" filled with the example input, answering what onnxruntime answers.
    await page.click('a[href="#/functions/alpha"]');
    await page.waitForSelector('#fn-profile');
    expect(await page.locator('#fn-profile').textContent()).toMatch(/resident on: node-/);
    expect(await page.locator('#fn-profile').textContent()).toContain('(file under 1 MiB: mostly onnxruntime overhead, no memory factor)');
    await expect.poll(() => page.locator('#try-input').inputValue()).not.toBe('');
    const example = JSON.parse(await page.locator('#try-input').inputValue());
    const ramp = [0, 1, 2, 3].map((i) => ((i * 7919) % 1000) / 1000 - 0.5);
    expect(example).toEqual({ x: { type: 'float32', dims: [1, 4], data: ramp } });
    await page.click('#try-invoke');
    await page.waitForSelector('#try-outputs');
    const directEx = await runDirect(mlpModel(A), { x: new ort.Tensor('float32', Float32Array.from(ramp), [1, 4]) });
    expect(JSON.parse((await page.locator('#try-outputs').textContent())!).y.data).toEqual(Array.from(directEx.y!.data as Float32Array));
    const data = [0.5, -1, 2, 0.25];
    await page.fill('#try-input', JSON.stringify({ x: { type: 'float32', dims: [1, 4], data } }));
    await page.click('#try-invoke');
    await page.waitForSelector('#try-outputs'); // the click cleared the previous answer
    const shown = JSON.parse((await page.locator('#try-outputs').textContent())!);
    const direct = await runDirect(mlpModel(A), { x: new ort.Tensor('float32', Float32Array.from(data), [1, 4]) });
    expect(shown.y.data).toEqual(Array.from(direct.y!.data as Float32Array));
    expect(await page.locator('#try-timing').textContent()).toMatch(/^warm on node-/);
    await page.screenshot({ path: join(shots, 'function.png'), fullPage: true });

    // An unload in the recent evictions: its cause once, not 'unloaded on request: unloaded on request'.
    expect((await b.json('POST', '/v2/repository/models/alpha/unload')).status).toBe(200);
    await page.click('a[href="#/"]');
    const evicted = page.locator('#evictions tbody tr', { hasText: 'alpha' });
    await expect.poll(async () => (await evicted.locator('td').allTextContents()).at(-1), { timeout: 10_000 }).toBe('unloaded on request');

    // A link to a function that is not there: the page says so, with nothing to try or delete (not 'loading…' for ever).
    await page.goto(`${url}/#/functions/nope`);
    await page.waitForSelector('#fn-missing');
    expect(await page.locator('#fn-missing').textContent()).toContain('no function named "nope"');
    expect(await page.locator('#try-invoke, #fn-delete, #fn-info .muted').count()).toBe(0);

    expect(errors).toEqual([]);
    expect(offsite).toEqual([]);
  });

  it('serves the API docs (Swagger UI over /openapi.json) and bull-board, with nothing from the internet', async () => {
    await page.goto(`${url}/docs`);
    await expect.poll(() => page.locator('.opblock').count(), { timeout: 20_000 }).toBeGreaterThan(20);
    expect(await page.locator('.opblock-summary-path').allTextContents()).toEqual(expect.arrayContaining(['/functions/{name}/invoke', '/v2/models/{name}/infer', '/stats']));
    await page.screenshot({ path: join(shots, 'docs.png') });
    await page.goto(`${url}/queues`);
    await expect.poll(() => page.getByText(`node-node-${b.namespace}`).count(), { timeout: 20_000 }).toBeGreaterThan(0);
    await page.screenshot({ path: join(shots, 'queues.png') });
    // bull-board's own links (its title, the status tabs) go to /queues/...: reloaded, they show the page too.
    const tab = page.locator('a[href="/queues/?status=active"]').first();
    await tab.click();
    await expect.poll(() => page.url()).toBe(`${url}/queues/?status=active`);
    const reloaded = await page.reload();
    expect(reloaded?.status()).toBe(200);
    await expect.poll(() => page.getByText(`node-node-${b.namespace}`).count(), { timeout: 20_000 }).toBeGreaterThan(0);
    expect(errors).toEqual([]);
    expect(offsite).toEqual([]);
  });
});

describe('the dashboard with keys', () => {
  let b: TestBrulee;
  let browser: Browser;
  beforeAll(async () => {
    b = await startBrulee({ API_KEY: 'admin-secret-1', INVOKE_API_KEY: 'read-secret-1' });
    browser = await launchChromium();
  });
  afterAll(async () => {
    await browser?.close();
    await b?.destroy();
  });

  it('asks for the key to read, and for the admin key before a change', async () => {
    const url = await b.listen();
    const page = await browser.newPage();
    await page.goto(url);
    await expect.poll(() => page.locator('#status').textContent(), { timeout: 10_000 }).toBe('needs a key to read');
    expect(await page.locator('#notice').textContent()).toMatch(/needs the header Authorization: Bearer <INVOKE_API_KEY or API_KEY> — enter the key at the top right/);
    await page.fill('#key', 'read-secret-1');
    await page.press('#key', 'Enter');
    await page.waitForSelector('#status.ok');
    // A registration with the read key: refused, and the page asks for the key again.
    const file = join(tmpdir(), `brulee-keys-${process.pid}.onnx`);
    writeFileSync(file, mlpModel(A));
    await page.setInputFiles('#model-file', file);
    await expect.poll(() => page.locator('#notice').textContent(), { timeout: 20_000 }).toMatch(/^the key in the Authorization header is wrong \(this call needs API_KEY\) — enter the key/);
    expect(await page.locator('#key.ask').count()).toBe(1);
    await page.fill('#key', 'admin-secret-1');
    await page.press('#key', 'Enter');
    await page.setInputFiles('#model-file', file);
    await expect.poll(() => page.locator('#upload-status').textContent(), { timeout: 30_000 }).toMatch(/^registered brulee-keys-\d+ v1: /);
    await page.close();
  });
});
