#!/usr/bin/env node
// The `brulee` command (package.json "bin"): runs cli/main.ts through tsx's loader.
import { register } from 'tsx/esm/api';

register();
const { main } = await import('./main.ts');
process.exitCode = await main(process.argv.slice(2));
