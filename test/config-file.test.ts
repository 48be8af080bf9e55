/**
 * node_config.json: a reference node's file loads as it is; an invalid file stops the node with the
 * key named and is never rewritten (library and real CLI); flag > env > file precedence; relative
 * paths resolve against the config file's folder.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer, type AddressInfo } from 'node:net';
import path from 'node:path';
import { before, describe, test } from 'node:test';
import { parseCliOptions, UsageError } from '../src/config/cli-options.ts';
import { ConfigError, ConfigStore } from '../src/config/config-store.ts';
import { EdgeNode } from '../src/edge-node.ts';
import { buildStartJs, cleanupStack, fetchRaw, freePort, memoryLogger, REPO_ROOT, removeDir, tempDir, waitFor } from './helpers.ts';

/** A reference node's default node_config.json (its master address replaced by loopback). */
const REFERENCE_CONFIG = {
  mainServerIp: '127.0.0.1',
  mainServerPort: 80,
  syncInterval: 10,
  nodeId: null,
  nodePort: 80,
  publicIp: null,
  publicPort: null,
  usePublicAddress: false,
  storage: { path: './storage', maxSize: 10737418240, cleanupThreshold: 0.9, autoCleanup: true },
  network: { maxConcurrentDownloads: 100, downloadTimeout: 300, connectionTimeout: 10, retryCount: 3, retryDelay: 5 },
  logging: { level: 'INFO', fileEnabled: true, filePath: './logs/node.log', maxFileSize: 10485760, backupCount: 5 },
  heartbeat: { interval: 10, timeout: 30 },
  cleanup: { enabled: true, cleanOnStartup: true, cleanEndedMeetings: true },
};

const INVALID_FILES: Array<{ key: string; content: string }> = [
  { key: 'network.retryCount', content: JSON.stringify({ ...REFERENCE_CONFIG, network: { ...REFERENCE_CONFIG.network, retryCount: 99 } }) },
  { key: 'syncInterval', content: JSON.stringify({ ...REFERENCE_CONFIG, syncInterval: 5 }) },
  { key: 'heartbeat.interval', content: JSON.stringify({ ...REFERENCE_CONFIG, heartbeat: { interval: '10', timeout: 30 } }) },
  { key: 'storage.bogus', content: JSON.stringify({ ...REFERENCE_CONFIG, storage: { ...REFERENCE_CONFIG.storage, bogus: 1 } }) },
  { key: 'mainServerPort', content: JSON.stringify({ ...REFERENCE_CONFIG, mainServerPort: 0 }) },
  // A top-level typo is an unknown key, named like a nested one (issue 14).
  { key: 'synInterval', content: JSON.stringify({ ...REFERENCE_CONFIG, synInterval: 30 }) },
  { key: 'mainServerIp', content: JSON.stringify({ ...REFERENCE_CONFIG, mainServerIp: '127.0.0.1:80' }) },
];

/** Every key of `expected` (recursively) has the same value in `actual`. */
function assertIncludes(actual: unknown, expected: unknown, at = ''): void {
  if (typeof expected === 'object' && expected !== null && !Array.isArray(expected)) {
    assert.ok(typeof actual === 'object' && actual !== null, `${at || '(root)'} is an object`);
    for (const [key, value] of Object.entries(expected)) {
      assertIncludes((actual as Record<string, unknown>)[key], value, at ? `${at}.${key}` : key);
    }
    return;
  }
  assert.deepEqual(actual, expected, at);
}

describe('a reference node_config.json', () => {
  test('loads with every value as written; only the generated nodeId is added', async (t) => {
    const defer = cleanupStack(t);
    const dir = await tempDir();
    defer(() => removeDir(dir));
    const file = path.join(dir, 'node_config.json');
    await writeFile(file, JSON.stringify(REFERENCE_CONFIG, null, 4));

    const store = ConfigStore.open(file);
    assert.deepEqual(JSON.parse(await readFile(file, 'utf8')), REFERENCE_CONFIG, 'opening writes nothing');
    // What the node's start does once it listens.
    store.completeFile();
    const config = store.current;
    // Settings this node adds beyond the reference's may appear with their defaults; every
    // reference key keeps exactly the value written.
    assertIncludes(config, { ...REFERENCE_CONFIG, nodeId: config.nodeId });
    const nodeId = config.nodeId;
    assert.match(String(nodeId), /^node-[0-9a-f]{8}$/);

    const saved = JSON.parse(await readFile(file, 'utf8')) as Record<string, unknown>;
    assertIncludes(saved, { ...REFERENCE_CONFIG, nodeId });
    assert.equal(saved.nodeId, nodeId, 'the generated nodeId is persisted');
    assert.equal(ConfigStore.open(file).current.nodeId, nodeId, 'and reused on the next start');
  });

  test('starts a node whose relative paths resolve against the config file\'s folder', async (t) => {
    const defer = cleanupStack(t);
    const dir = await tempDir();
    defer(() => removeDir(dir));
    const file = path.join(dir, 'node_config.json');
    await writeFile(file, JSON.stringify(REFERENCE_CONFIG, null, 4));
    assert.notEqual(path.resolve(process.cwd()), dir);

    // Its own logger (console + the configured file): port 0 instead of the reference's 80.
    const node = await EdgeNode.start({ configPath: file, port: 0, host: '127.0.0.1', policy: { drainTimeoutMs: 1_000 } });
    defer(() => node.stop());
    assert.equal(node.store.root, path.join(dir, 'storage'));
    assert.ok(existsSync(path.join(dir, 'storage')));
    assert.equal(node.master.baseUrl, 'http://127.0.0.1:80');
    assert.equal((await fetchRaw(`${node.localUrl}/healthz`)).status, 200);
    await node.stop();
    assert.ok(existsSync(path.join(dir, 'logs', 'node.log')), 'logging.filePath is relative to the config file');
  });

  test('absolute paths are used as they are', async (t) => {
    const defer = cleanupStack(t);
    const dir = await tempDir();
    const elsewhere = await tempDir('edge-storage-');
    defer(() => removeDir(dir));
    defer(() => removeDir(elsewhere));
    const file = path.join(dir, 'node_config.json');
    await writeFile(file, JSON.stringify({ ...REFERENCE_CONFIG, storage: { ...REFERENCE_CONFIG.storage, path: elsewhere } }));
    const config = ConfigStore.open(file);
    assert.equal(config.resolvePath(config.current.storage.path), elsewhere);
    assert.equal(config.resolvePath(config.current.logging.filePath), path.join(dir, 'logs', 'node.log'));
  });
});

describe('an invalid config file', () => {
  for (const { key, content } of INVALID_FILES) {
    test(`${key}: ConfigStore.open and EdgeNode.start refuse, name the key, leave the file alone`, async (t) => {
      const defer = cleanupStack(t);
      const dir = await tempDir();
      defer(() => removeDir(dir));
      const file = path.join(dir, 'node_config.json');
      await writeFile(file, content);

      assert.throws(
        () => ConfigStore.open(file),
        (error: unknown) => {
          assert.ok(error instanceof ConfigError);
          assert.ok(key in error.fields, `fields ${JSON.stringify(error.fields)} name ${key}`);
          assert.ok(error.message.includes(key), error.message);
          return true;
        },
      );
      await assert.rejects(EdgeNode.start({ configPath: file, port: 0, host: '127.0.0.1', logger: memoryLogger() }), ConfigError);
      assert.equal(await readFile(file, 'utf8'), content, 'never rewritten');
      assert.deepEqual(await readdir(dir), ['node_config.json'], 'nothing else created (no storage, no logs)');
    });
  }

  test('not JSON: refused with the reason, file untouched', async (t) => {
    const defer = cleanupStack(t);
    const dir = await tempDir();
    defer(() => removeDir(dir));
    const file = path.join(dir, 'node_config.json');
    const content = '{"mainServerIp": "127.0.0.1",';
    await writeFile(file, content);
    assert.throws(() => ConfigStore.open(file), (error: unknown) => error instanceof ConfigError && /JSON/.test(error.message));
    assert.equal(await readFile(file, 'utf8'), content);
  });
});

describe('the CLI (node start.js)', () => {
  let startJs = '';

  before(async () => {
    startJs = await buildStartJs();
  });

  function run(args: string[], options: { cwd: string; env?: Record<string, string> }) {
    const child = spawn(process.execPath, [startJs, ...args], {
      cwd: options.cwd,
      env: { PATH: process.env.PATH ?? '', ...options.env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (text: string) => (stdout += text));
    child.stderr.setEncoding('utf8').on('data', (text: string) => (stderr += text));
    return new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) => {
      const timer = setTimeout(() => child.kill('SIGKILL'), 20_000);
      child.once('exit', (code) => {
        clearTimeout(timer);
        resolve({ code, stdout, stderr });
      });
    });
  }

  for (const { key, content } of INVALID_FILES.slice(0, 2)) {
    test(`refuses an invalid file (${key}): exit 78, the key on stderr, the file unchanged`, async (t) => {
      const defer = cleanupStack(t);
      const dir = await tempDir();
      defer(() => removeDir(dir));
      const file = path.join(dir, 'node_config.json');
      await writeFile(file, content);

      const viaFlag = await run(['--config', file, '--port', '8001'], { cwd: dir });
      assert.equal(viaFlag.code, 78, viaFlag.stderr);
      assert.ok(viaFlag.stderr.includes(key), viaFlag.stderr);
      // The default ./node_config.json of the working folder, and EDGE_CONFIG, find it too.
      const viaDefault = await run([], { cwd: dir });
      assert.equal(viaDefault.code, 78, viaDefault.stderr);
      // From another, empty folder: if EDGE_CONFIG were ignored, a default config would appear there.
      const elsewhere = await tempDir();
      defer(() => removeDir(elsewhere));
      const viaEnv = await run([], { cwd: elsewhere, env: { EDGE_CONFIG: file } });
      assert.equal(viaEnv.code, 78, viaEnv.stderr);
      assert.ok(viaEnv.stderr.includes(key));
      assert.deepEqual(await readdir(elsewhere), []);
      assert.equal(await readFile(file, 'utf8'), content, 'never rewritten');
      assert.deepEqual(await readdir(dir), ['node_config.json']);
    });
  }

  test('an unusable storage.path or logging.filePath (under /proc, under a regular file) exits 78 within seconds, in one line naming the key', async (t) => {
    const defer = cleanupStack(t);
    const dir = await tempDir();
    defer(() => removeDir(dir));
    const aFile = path.join(dir, 'a-file');
    await writeFile(aFile, 'not a folder');
    const cases = [
      { key: 'storage.path', config: { storage: { path: '/proc/edge-storage' } }, reason: /cannot create the folder \/proc\/edge-storage/ },
      { key: 'logging.filePath', config: { logging: { filePath: '/proc/edge-logs/node.log' } }, reason: /cannot create the folder \/proc\/edge-logs/ },
      { key: 'storage.path', config: { storage: { path: path.join(aFile, 'storage') } }, reason: /a-file is a file/ },
      { key: 'logging.filePath', config: { logging: { filePath: dir } }, reason: /is not a regular file/ },
    ];
    for (const { key, config, reason } of cases) {
      const file = path.join(dir, 'node_config.json');
      // A master nobody listens on: the node must never get as far as polling it.
      await writeFile(file, JSON.stringify({ mainServerPort: 9, ...config }));
      const started = Date.now();
      const result = await run(['--config', file, '--port', '8001', '--host', '127.0.0.1'], { cwd: dir });
      assert.equal(result.code, 78, `${key}: ${result.stderr}`);
      assert.ok(Date.now() - started < 10_000, 'within seconds, not a hang');
      const lines = result.stderr.trim().split('\n');
      assert.equal(lines.length, 1, `one line: ${result.stderr}`);
      assert.match(lines[0] ?? '', new RegExp(`^meeting-edge: refusing to start: ${key.replace('.', '\\.')}: `));
      assert.match(lines[0] ?? '', reason);
      assert.doesNotMatch(result.stderr, /\bat .*\(/, 'no stack trace');
    }
  });

  test('a busy port or a host that is no address here: one line naming the option, exit 1, no admin token generated', async (t) => {
    const defer = cleanupStack(t);
    const dir = await tempDir();
    defer(() => removeDir(dir));
    const busy = createServer();
    await new Promise<void>((resolve) => busy.listen(0, '127.0.0.1', resolve));
    defer(() => new Promise<void>((resolve) => busy.close(() => resolve())));
    const port = String((busy.address() as AddressInfo).port);
    const file = path.join(dir, 'node_config.json');
    const cases = [
      { args: ['--port', port, '--host', '127.0.0.1'], message: new RegExp(`port ${port} on 127\\.0\\.0\\.1 is in use .*\\(--port\\)`) },
      { args: ['--port', port, '--host', 'no-such-host.invalid'], message: /--host no-such-host\.invalid is neither an address nor a host name that resolves/ },
    ];
    for (const { args, message } of cases) {
      // A master nobody listens on: the node must never get as far as polling it.
      const content = JSON.stringify({ mainServerPort: 9 });
      await writeFile(file, content);
      const result = await run(['--config', file, ...args], { cwd: dir });
      assert.equal(result.code, 1, result.stderr);
      const lines = result.stderr.trim().split('\n');
      assert.equal(lines.length, 1, `one line: ${result.stderr}`);
      assert.match(lines[0] ?? '', message);
      assert.doesNotMatch(result.stdout, /admin token/, 'no token shown for a start that failed');
      assert.equal(await readFile(file, 'utf8'), content, 'the config file is not written (no "adminToken": null, no defaults)');
      assert.ok(!existsSync(path.join(dir, 'logs', 'node.log')), 'no log file left by a start that failed');
      assert.ok(!existsSync(path.join(dir, 'storage', 'meeting-edge.lock')), 'and no lock');
    }
    // No config file yet: a failed first start creates none.
    await rm(file);
    const first = await run(['--config', file, '--port', port, '--host', '127.0.0.1'], { cwd: dir });
    assert.equal(first.code, 1, first.stderr);
    assert.ok(!existsSync(file), 'no config file created by a start that failed');
  });

  test('a --config in a folder that does not exist: exit 78 naming the folder, nothing created', async (t) => {
    const defer = cleanupStack(t);
    const dir = await tempDir();
    defer(() => removeDir(dir));
    const mistyped = path.join(dir, 'etc', 'meeting-egde', 'node_config.json');
    const result = await run(['--config', mistyped, '--port', String(await freePort()), '--host', '127.0.0.1'], { cwd: dir });
    assert.equal(result.code, 78, result.stderr);
    const lines = result.stderr.trim().split('\n');
    assert.equal(lines.length, 1, `one line: ${result.stderr}`);
    assert.match(lines[0] ?? '', new RegExp(`^meeting-edge: refusing to start: invalid configuration: .*the folder ${path.dirname(mistyped).replaceAll('/', '\\/')} does not exist`));
    assert.deepEqual(await readdir(dir), [], 'no folder, config, storage or log created');

    // An existing folder with no file: the first start creates it (and listens).
    const fresh = path.join(dir, 'node_config.json');
    const child = spawn(process.execPath, [startJs, '--config', fresh, '--port', String(await freePort()), '--host', '127.0.0.1'], { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });
    defer(() => child.kill('SIGKILL'));
    let stdout = '';
    child.stdout.setEncoding('utf8').on('data', (text: string) => (stdout += text));
    await waitFor('listening', () => stdout.includes('control panel:'), 20_000);
    const saved = JSON.parse(await readFile(fresh, 'utf8')) as Record<string, unknown>;
    assert.match(String(saved.nodeId), /^node-[0-9a-f]{8}$/);
    assert.equal(typeof saved.adminToken, 'string', 'written once, with the token generated');
    assert.doesNotMatch(stdout, /config: changed/, 'saving the generated token is not logged as a change');
  });

  test('config errors are one line; invalid JSON says line and column; a bad logging.filePath names the file', async (t) => {
    const defer = cleanupStack(t);
    const dir = await tempDir();
    defer(() => removeDir(dir));
    const file = path.join(dir, 'node_config.json');
    const oneLine = async (content: string) => {
      await writeFile(file, content);
      const result = await run(['--config', file, '--port', '8001', '--host', '127.0.0.1'], { cwd: dir });
      assert.equal(result.code, 78, result.stderr);
      const lines = result.stderr.trim().split('\n');
      assert.equal(lines.length, 1, `one line: ${result.stderr}`);
      return lines[0] ?? '';
    };
    assert.match(await oneLine('{\n    "mainServerIp": "127.0.0.1"\n    "mainServerPort": 9\n}\n'), /node_config\.json: not valid JSON at line 3, column 5: Expected ',' or '\}' after property value$/);
    assert.match(await oneLine('{\n  "usePublicAddress": tru\n}'), /not valid JSON at line 2, column 26: Unexpected token/);
    assert.match(await oneLine(JSON.stringify({ syncInterval: 5, heartbeat: { interval: 1 } })), /^meeting-edge: refusing to start: invalid configuration: \S+node_config\.json: syncInterval must be ≥ 10; heartbeat\.interval must be ≥ 10$/);
    const aFile = path.join(dir, 'a-file');
    await writeFile(aFile, 'not a folder');
    const logFile = path.join(aFile, 'logs', 'node.log');
    const line = await oneLine(JSON.stringify({ mainServerPort: 9, logging: { filePath: logFile } }));
    assert.ok(line.startsWith(`meeting-edge: refusing to start: logging.filePath: ${logFile}: `), line);
  });

  test('--help prints the usage and exits 0; a bad flag exits 2', async (t) => {
    const defer = cleanupStack(t);
    const dir = await tempDir();
    defer(() => removeDir(dir));
    const help = await run(['--help'], { cwd: dir });
    assert.equal(help.code, 0);
    assert.match(help.stdout, /--port/);
    assert.match(help.stdout, /--config/);
    const bad = await run(['--port', 'eighty'], { cwd: dir });
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /--port/);
    assert.deepEqual(await readdir(dir), [], 'no config file created by --help or a usage error');
  });

  test('--version prints the package version and exits 0; no config file is created', async (t) => {
    const defer = cleanupStack(t);
    const dir = await tempDir();
    defer(() => removeDir(dir));
    const { version } = JSON.parse(await readFile(path.join(REPO_ROOT, 'package.json'), 'utf8')) as { version: string };
    const result = await run(['--version'], { cwd: dir });
    assert.equal(result.code, 0, result.stderr);
    assert.equal(result.stdout.trim(), `meeting-edge ${version}`);
    assert.deepEqual(await readdir(dir), []);
  });
});

describe('precedence: flag > environment > config file > default', () => {
  test('defaults: port from the config file, host 0.0.0.0, ./node_config.json', () => {
    assert.deepEqual(parseCliOptions([], {}), { port: undefined, host: '0.0.0.0', configPath: './node_config.json', help: false });
  });

  test('EDGE_* variables fill what no flag gives; NODE_* are not ours', () => {
    const env = { EDGE_PORT: '9001', EDGE_HOST: '127.0.0.1', EDGE_CONFIG: '/etc/edge/node_config.json', NODE_PORT: '1234' };
    assert.deepEqual(parseCliOptions([], env), { port: 9001, portSource: 'EDGE_PORT', host: '127.0.0.1', configPath: '/etc/edge/node_config.json', help: false });
    assert.equal(parseCliOptions([], { NODE_PORT: '1234' }).port, undefined);
  });

  test('flags win over EDGE_* variables', () => {
    const env = { EDGE_PORT: '9001', EDGE_HOST: '127.0.0.1', EDGE_CONFIG: '/etc/edge/node_config.json' };
    const options = parseCliOptions(['--port', '8001', '--host', '::1', '--config', 'mine.json'], env);
    assert.deepEqual(options, { port: 8001, portSource: '--port', host: '::1', configPath: 'mine.json', help: false });
    assert.equal(parseCliOptions(['--port=8002'], { EDGE_PORT: 'not-a-port' }).port, 8002, 'an unused bad variable is not an error');
  });

  test('bad ports name their source; unknown flags are usage errors', () => {
    for (const value of ['0', '65536', 'abc', '80.5', '']) {
      assert.throws(() => parseCliOptions(['--port', value], {}), (e: unknown) => e instanceof UsageError && /--port/.test(e.message), value);
    }
    assert.throws(() => parseCliOptions([], { EDGE_PORT: '99999' }), (e: unknown) => e instanceof UsageError && /EDGE_PORT/.test(e.message));
    assert.throws(() => parseCliOptions(['--prot', '80'], {}), UsageError);
    assert.throws(() => parseCliOptions(['extra'], {}), UsageError);
  });

  test('no flag and no variable: the node listens on nodePort from the file; a flag overrides it', async (t) => {
    const defer = cleanupStack(t);
    const dir = await tempDir();
    defer(() => removeDir(dir));
    const file = path.join(dir, 'node_config.json');
    const filePort = await freePort();
    await writeFile(file, JSON.stringify({ ...REFERENCE_CONFIG, nodePort: filePort, logging: { ...REFERENCE_CONFIG.logging, fileEnabled: false } }));

    const fromFile = parseCliOptions(['--config', file, '--host', '127.0.0.1'], {});
    const node = await EdgeNode.start({ configPath: fromFile.configPath, port: fromFile.port, host: fromFile.host, logger: memoryLogger(), policy: { drainTimeoutMs: 1_000 } });
    defer(() => node.stop());
    assert.equal(node.port, filePort);
    await node.stop();

    const flagPort = await freePort();
    const fromFlag = parseCliOptions(['--config', file, '--host', '127.0.0.1', '--port', String(flagPort)], { EDGE_PORT: String(filePort) });
    const other = await EdgeNode.start({ configPath: fromFlag.configPath, port: fromFlag.port, host: fromFlag.host, logger: memoryLogger(), policy: { drainTimeoutMs: 1_000 } });
    defer(() => other.stop());
    assert.equal(other.port, flagPort);
  });
});
