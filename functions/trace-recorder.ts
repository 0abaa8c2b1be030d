import { createWriteStream, existsSync, mkdirSync, type WriteStream } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { FunctionMeta } from './registry';

/**
 * Records the live traffic as a plain trace the simulator replays (`npm run sim -- --trace-csv
 * DATA_DIR/traces/invocations.csv --catalog DATA_DIR/traces/catalog.json`): one `time_ms,function`
 * line per accepted invocation, and the measured size, load and exec time of each function.
 *
 * The catalogue is written at each registration from the registration profile (a function
 * deleted since keeps the entry it had), and again when brulee closes from what the live invocations measured where there are any (`LiveTimes`): mean
 * exec time of successful invocations, and mean wait of cold starts (a load). So a model whose
 * profile run failed (exec recorded as 0) gets its real exec time, and the simulator replays the
 * load times the node actually saw.
 */
export interface LiveTimes {
  /** Mean exec time of the function's successful invocations, ms (absent: none yet). */
  execMs?: number;
  /** Mean time its cold starts waited for a load, ms (absent: none yet). */
  loadMs?: number;
}

export class TraceRecorder {
  private readonly out: WriteStream;
  readonly csvPath: string;
  readonly catalogPath: string;

  constructor(dataDir: string) {
    const dir = join(dataDir, 'traces');
    mkdirSync(dir, { recursive: true });
    this.csvPath = join(dir, 'invocations.csv');
    this.catalogPath = join(dir, 'catalog.json');
    const fresh = !existsSync(this.csvPath);
    this.out = createWriteStream(this.csvPath, { flags: 'a' });
    if (fresh) this.out.write('time_ms,function\n');
  }

  record(fn: string, at = Date.now()): void {
    this.out.write(`${at},${fn}\n`);
  }

  async writeCatalog(fns: ReadonlyArray<Pick<FunctionMeta, 'name' | 'sizeBytes'> & { profile: Pick<FunctionMeta['profile'], 'loadMs' | 'execMs'> }>, live: ReadonlyMap<string, LiveTimes> = new Map()): Promise<void> {
    const catalog = Object.fromEntries(
      fns.map((f) => {
        const l = live.get(f.name);
        // profileLoadMs: what the node's eviction policy is told a load costs (the registration
        // profile's), which the simulator hands its policy while loads take the live loadMs.
        return [f.name, { sizeBytes: f.sizeBytes, loadMs: l?.loadMs ?? f.profile.loadMs, execMs: l?.execMs ?? f.profile.execMs ?? 0, profileLoadMs: f.profile.loadMs }];
      }),
    );
    // A function no longer registered keeps its entry (deleted since, or of an earlier run whose
    // calls the CSV, appended to, still holds): the simulator refuses a trace naming a function
    // its catalogue lacks, so without it the recording could not be replayed at all.
    let kept: Record<string, unknown> = {};
    try {
      kept = JSON.parse(await readFile(this.catalogPath, 'utf8')) as Record<string, unknown>;
    } catch {
      // None yet, or unreadable: the registered functions' entries alone.
    }
    await writeFile(this.catalogPath, JSON.stringify({ ...kept, ...catalog }, null, 1));
  }

  close(): Promise<void> {
    return new Promise((resolve) => this.out.end(resolve));
  }
}
