/**
 * `npm run demo`: the reference master on 127.0.0.1:8000 with two sample meetings, and one edge
 * node on 127.0.0.1:8001 syncing them. Prints the panel URL and runs until Ctrl+C.
 * `npm run demo -- --check` stops once both packages are synced and verified byte for byte.
 */
import { createHash } from 'node:crypto';
import { mkdir, writeFile } from 'node:fs/promises';
import { request } from 'node:http';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { startSampleMaster } from '../reference-master/cli.ts';
import { readEnvironment } from '../src/config/cli-options.ts';
import { EdgeNode } from '../src/edge-node.ts';

const root = path.resolve(import.meta.dirname, '..');
const { values } = parseArgs({
  options: {
    check: { type: 'boolean', default: false },
    'master-port': { type: 'string', default: '8000' },
    'node-port': { type: 'string', default: '8001' },
    size: { type: 'string', default: String(24 * 1024 * 1024) },
    throttle: { type: 'string', default: String(4 * 1024 * 1024) },
  },
});

const demoDir = path.join(root, '.demo');
await mkdir(demoDir, { recursive: true });
const configPath = path.join(demoDir, 'node_config.json');
const masterPort = Number(values['master-port']);
const nodePort = Number(values['node-port']);

const sample = await startSampleMaster({
  port: masterPort,
  host: '127.0.0.1',
  packageSizeBytes: Number(values.size),
  throttleBytesPerSec: Number(values.throttle) || null,
});
console.log(`reference master: ${sample.url} (meetings: ${sample.meetingIds.join(', ')})`);

// The demo's own config and storage live in .demo/ so the tracked node_config.json stays as shipped.
await writeFile(
  configPath,
  JSON.stringify(
    {
      mainServerIp: '127.0.0.1',
      mainServerPort: sample.port,
      nodePort,
      usePublicAddress: true,
      publicIp: '127.0.0.1',
      storage: { path: './storage' },
      logging: { level: 'INFO', fileEnabled: true, filePath: './logs/node.log' },
      ...(await readExisting(configPath)),
    },
    null,
    4,
  ),
);

const node = await EdgeNode.start({ configPath, port: nodePort, host: '127.0.0.1', publicDir: path.join(root, 'public'), environment: readEnvironment(process.env) });
console.log(`edge node ${node.config.current.nodeId}: ${node.localUrl}`);
console.log(`control panel: ${node.localUrl}/static/index.html`);

const shutdown = async (code: number) => {
  await node.stop();
  await sample.close();
  process.exit(code);
};
process.on('SIGINT', () => void shutdown(0));
process.on('SIGTERM', () => void shutdown(0));

if (values.check) {
  const deadline = Date.now() + 120_000;
  while (node.sync.syncedMeetingIds().length < sample.meetingIds.length) {
    if (Date.now() > deadline) {
      console.error('demo check: packages did not sync within 120 s');
      await shutdown(1);
    }
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
  let ok = true;
  for (const id of sample.meetingIds) {
    const expected = sample.master.meeting(id)?.package?.sha256;
    const actual = await sha256Of(`${node.localUrl}/api/v1/meetings/${id}/download-package`);
    const same = actual === expected;
    ok &&= same;
    console.log(`${same ? 'ok  ' : 'FAIL'} ${id}: node serves sha256 ${actual.slice(0, 16)}… (master ${String(expected).slice(0, 16)}…)`);
  }
  await shutdown(ok ? 0 : 1);
}

async function readExisting(file: string): Promise<Record<string, unknown>> {
  // Keep the nodeId of an earlier demo run so the master sees the same node.
  try {
    const { readFile } = await import('node:fs/promises');
    const parsed = JSON.parse(await readFile(file, 'utf8')) as Record<string, unknown>;
    return parsed.nodeId ? { nodeId: parsed.nodeId } : {};
  } catch {
    return {};
  }
}

function sha256Of(url: string): Promise<string> {
  return new Promise((resolve, reject) => {
    request(url, (res) => {
      const hash = createHash('sha256');
      res.on('data', (chunk: Buffer) => hash.update(chunk));
      res.on('end', () => resolve(hash.digest('hex')));
      res.on('error', reject);
    })
      .on('error', reject)
      .end();
  });
}
