import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';

/**
 * The panel's third-party files, served under /static/vendor/<name>/ straight from the installed
 * npm package rather than copied into public/: nothing to go stale or to build, and the node finds
 * them wherever npm put them (a clone after `npm install`, `npm ci --omit=dev`, the Docker image)
 * by Node's own resolution from the program's folder. uPlot (MIT) draws the live traffic chart.
 */
export interface VendorDir {
  /** URL prefix under /static/vendor/. */
  name: string;
  /** Absolute folder holding the files. */
  dir: string;
}

export function panelVendorDirs(from: string = import.meta.url): VendorDir[] {
  const require = createRequire(from);
  const dirs: VendorDir[] = [];
  try {
    const dir = path.dirname(require.resolve('uplot/dist/uPlot.iife.min.js'));
    if (existsSync(path.join(dir, 'uPlot.min.css'))) dirs.push({ name: 'uplot', dir });
  } catch {
    // Not installed: the panel shows its figures without the chart.
  }
  return dirs;
}
