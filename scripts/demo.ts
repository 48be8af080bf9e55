/**
 * `npm run demo`: the reference master on 127.0.0.1:8000 with two sample meetings, and one edge
 * node on 127.0.0.1:8001 syncing them. Prints the panel URL and the admin token and runs until
 * Ctrl+C. Its config (with the admin token and whatever was changed in the panel) and storage stay
 * in .demo/ between runs. Every problem is one line naming the flag to change; --help lists them.
 */
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { request } from 'node:http';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { startSampleMaster, type SampleMaster } from '../reference-master/cli.ts';
import { readEnvironment } from '../src/config/cli-options.ts';
import { ConfigError } from '../src/config/config-store.ts';
import { describeJsonError } from '../src/config/json-error.ts';
import { EdgeNode } from '../src/edge-node.ts';
import { StorageInUseError } from '../src/node/storage-lock.ts';

const root = path.resolve(import.meta.dirname, '..');

const DEMO_USAGE = `Usage: npm run demo -- [options]

Starts the reference master with two sample meetings and one edge node syncing them, on loopback.

  --master-port N   port of the reference master (default 8000)
  --node-port N     port of the edge node and its control panel (default 8001)
  --size BYTES      size of each sample package (default ${24 * 1024 * 1024})
  --throttle B/S    pace the master's package downloads, 0 = unpaced (default ${4 * 1024 * 1024})
  --dir PATH        folder for the demo's config, storage and logs (default .demo)
  --check           exit once both packages are synced and verified byte for byte (0 = ok)
  -h, --help        this text

The config (admin token included) and the packages are kept in the --dir folder between runs:
delete it to start afresh.`;

/** A problem the operator fixes by changing a flag or a file: printed as one line, no stack. */
class DemoError extends Error {}

async function main(): Promise<number> {
  let values;
  try {
    ({ values } = parseArgs({
      options: {
        check: { type: 'boolean', default: false },
        'master-port': { type: 'string', default: '8000' },
        'node-port': { type: 'string', default: '8001' },
        size: { type: 'string', default: String(24 * 1024 * 1024) },
        throttle: { type: 'string', default: String(4 * 1024 * 1024) },
        dir: { type: 'string', default: path.join(root, '.demo') },
        help: { type: 'boolean', short: 'h', default: false },
      },
    }));
  } catch (error) {
    // ERR_PARSE_ARGS_UNKNOWN_OPTION and friends: their message already names the option.
    console.error(`demo: ${(error as Error).message.split('\n')[0]} (see npm run demo -- --help)`);
    return 2;
  }
  if (values.help) {
    console.log(DEMO_USAGE);
    return 0;
  }
  const masterPort = portFlag('--master-port', values['master-port']);
  const nodePort = portFlag('--node-port', values['node-port']);
  const size = numberFlag('--size', values.size, 1);
  const throttle = numberFlag('--throttle', values.throttle, 0);
  if (masterPort === nodePort) throw new DemoError(`--master-port and --node-port are both ${masterPort}: pass different ports`);

  const demoDir = path.resolve(values.dir);
  const configPath = path.join(demoDir, 'node_config.json');
  try {
    await mkdir(demoDir, { recursive: true });
  } catch (error) {
    throw new DemoError(`cannot create ${demoDir} (${(error as NodeJS.ErrnoException).code}): pass --dir PATH`);
  }

  let sample: SampleMaster;
  try {
    sample = await startSampleMaster({ port: masterPort, host: '127.0.0.1', packageSizeBytes: size, throttleBytesPerSec: throttle || null });
  } catch (error) {
    throw listenError(error, masterPort, '--master-port');
  }
  const upcoming = sample.upcomingMeetingIds.length > 0 ? `; scheduled later, preheated by the node: ${sample.upcomingMeetingIds.join(', ')}` : '';
  console.log(`reference master: ${sample.url} (meetings: ${sample.meetingIds.join(', ')}${upcoming})`);

  let node: EdgeNode;
  try {
    await writeDemoConfig(configPath, sample.port, nodePort);
    node = await EdgeNode.start({
      configPath,
      port: nodePort,
      host: '127.0.0.1',
      environment: readEnvironment(process.env),
      publicDir: path.join(root, 'public'),
      // Printed below on every run instead ("shown only now" is not true of the demo).
      announceAdminToken: () => {},
    });
  } catch (error) {
    await sample.close();
    // Never "delete the folder" while another node runs on it.
    if (error instanceof StorageInUseError) throw new DemoError(`another node runs on ${demoDir} (pid ${error.holder.pid}): stop it, or pass another --dir`);
    if (error instanceof ConfigError) throw new DemoError(`${error.message} (fix the file or delete ${demoDir} to start afresh)`);
    throw listenError(error, nodePort, '--node-port');
  }
  console.log(`edge node ${node.config.current.nodeId}: ${node.localUrl}`);
  console.log(`control panel: ${node.localUrl}/static/index.html`);
  console.log(`admin token: ${node.adminToken} (kept in ${configPath})`);

  const shutdown = async () => {
    await node.stop();
    await sample.close();
  };

  if (values.check) {
    const deadline = Date.now() + 120_000;
    // The packages of an earlier run are held already, but this run's master made new bytes: wait
    // until the node has fetched the master's current ones (it does after the master's token change).
    const current = (id: string) => node.sync.isServable(id) && node.store.get(id)?.sha256 === sample.master.meeting(id)?.package?.sha256;
    while (!sample.meetingIds.every(current)) {
      if (Date.now() > deadline) {
        console.error('demo check: packages did not sync within 120 s');
        await shutdown();
        return 1;
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
    await shutdown();
    return ok ? 0 : 1;
  }

  return new Promise<number>((resolve) => {
    const stop = () => void shutdown().then(() => resolve(0), () => resolve(1));
    // conf's dependency hooks these signals at import and re-sends them; ours is the only handler.
    for (const signal of ['SIGINT', 'SIGTERM'] as const) {
      process.removeAllListeners(signal);
      process.once(signal, stop);
    }
  });
}

/**
 * The demo's config: kept from the last run (admin token, panel changes, nodeId), with only the
 * master's and the node's ports set from this run's flags. Written fresh on the first run.
 */
async function writeDemoConfig(configPath: string, masterPort: number, nodePort: number): Promise<void> {
  let config: Record<string, unknown>;
  if (existsSync(configPath)) {
    const text = await readFile(configPath, 'utf8');
    try {
      config = JSON.parse(text) as Record<string, unknown>;
    } catch (error) {
      throw new ConfigError(`${configPath}: ${describeJsonError(text, error as SyntaxError)}`);
    }
    if (config.mainServerPort === masterPort && config.nodePort === nodePort) return;
    config = { ...config, mainServerPort: masterPort, nodePort };
  } else {
    config = {
      mainServerIp: '127.0.0.1',
      mainServerPort: masterPort,
      nodePort,
      usePublicAddress: true,
      publicIp: '127.0.0.1',
      storage: { path: './storage' },
      logging: { level: 'INFO', fileEnabled: true, filePath: './logs/node.log' },
    };
  }
  await writeFile(configPath, `${JSON.stringify(config, null, 4)}\n`, { mode: 0o600 });
}

function portFlag(flag: string, value: string): number {
  const port = Number(value);
  if (!/^\d+$/.test(value) || port < 1 || port > 65535) throw new DemoError(`${flag} expects a port from 1 to 65535, got ${JSON.stringify(value)}`);
  return port;
}

function numberFlag(flag: string, value: string, minimum: number): number {
  const parsed = Number(value);
  if (value.trim() === '' || !Number.isSafeInteger(parsed) || parsed < minimum) {
    throw new DemoError(`${flag} expects a whole number ≥ ${minimum}, got ${JSON.stringify(value)}`);
  }
  return parsed;
}

function listenError(error: unknown, port: number, flag: string): Error {
  const code = (error as NodeJS.ErrnoException).code;
  if (code === 'EADDRINUSE') return new DemoError(`port ${port} is in use: pass ${flag} N`);
  if (code === 'EACCES') return new DemoError(`port ${port} needs privileges: pass ${flag} N (1024 or above)`);
  return error as Error;
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

main().then(
  (code) => process.exit(code),
  (error: Error) => {
    console.error(error instanceof DemoError ? `demo: ${error.message}` : `demo: ${error.message} (unexpected; please report)`);
    process.exit(1);
  },
);
