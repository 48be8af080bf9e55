import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { ConfigError, ConfigStore } from './config-store.ts';
import type { NodeConfig } from './schema.ts';
import { createConfigValidator } from './validate.ts';

describe('ConfigStore', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'config-store-'));
  });
  after(() => rm(dir, { recursive: true, force: true }));

  let counter = 0;
  async function configFile(content?: unknown): Promise<string> {
    const file = path.join(dir, `config-${counter++}.json`);
    if (content !== undefined) await writeFile(file, typeof content === 'string' ? content : JSON.stringify(content));
    return file;
  }

  async function readJson(file: string): Promise<Record<string, unknown>> {
    return JSON.parse(await readFile(file, 'utf8')) as Record<string, unknown>;
  }

  test('no file: every default and a generated nodeId, written to disk by completeFile (the node\'s start, once it listens) and reused', async () => {
    const file = await configFile();
    const store = ConfigStore.open(file);
    assert.ok(!existsSync(file), 'opening writes nothing');
    const config = store.current;
    assert.equal(config.mainServerIp, '127.0.0.1');
    assert.equal(config.mainServerPort, 8000);
    assert.equal(config.syncInterval, 10);
    assert.equal(config.usePublicAddress, false);
    assert.equal(config.publicIp, null);
    assert.deepEqual(config.storage, { path: './storage', maxSize: 10737418240, cleanupThreshold: 0.9, autoCleanup: true });
    assert.equal(config.network.retryCount, 3);
    assert.equal(config.network.retryDelay, 5);
    assert.equal(config.network.downloadTimeout, 300);
    assert.equal(config.network.connectionTimeout, 10);
    assert.deepEqual(config.heartbeat, { interval: 10, timeout: 30 });
    assert.deepEqual(config.cleanup, { enabled: true, cleanOnStartup: true, cleanEndedMeetings: true });
    assert.equal(config.logging.level, 'INFO');
    assert.match(String(config.nodeId), /^node-[0-9a-f]{8}$/);

    store.completeFile();
    assert.ok(existsSync(file));
    const saved = await readJson(file);
    assert.equal(saved.nodeId, config.nodeId);
    assert.deepEqual(saved, JSON.parse(JSON.stringify(config)));
    assert.equal(ConfigStore.open(file).current.nodeId, config.nodeId);
  });

  test('no file in a folder that does not exist (a mistyped path): refused naming the folder, nothing created', () => {
    const folder = path.join(dir, 'no-such-folder');
    const file = path.join(folder, 'node_config.json');
    assert.throws(() => ConfigStore.open(file), (error: unknown) => error instanceof ConfigError && error.message.includes(`the folder ${folder} does not exist`));
    assert.ok(!existsSync(folder));
  });

  test('invalid JSON: refused with line and column, in one line', async () => {
    const file = await configFile('{\n  "mainServerPort": 9000,\n  "syncInterval": 30,\n}\n');
    assert.throws(() => ConfigStore.open(file), (error: unknown) => error instanceof ConfigError && /: not valid JSON at line 4, column 1: Expected double-quoted property name$/.test(error.message));
  });

  test('a partial file keeps its values and gets the defaults', async () => {
    const file = await configFile({ mainServerPort: 9000, network: { retryCount: 5 }, nodeId: 'node-fixed01' });
    const config = ConfigStore.open(file).current;
    assert.equal(config.mainServerPort, 9000);
    assert.equal(config.network.retryCount, 5);
    assert.equal(config.network.retryDelay, 5);
    assert.equal(config.nodeId, 'node-fixed01', 'an existing nodeId is kept');
    const saved = await readJson(file);
    assert.equal(saved.mainServerPort, 9000);
  });

  // Issue 14: unknown top-level keys used to be kept (and a typo silently did nothing).
  test('a file with an unknown top-level key (a typo) is refused, naming the key, file untouched', async () => {
    const content = JSON.stringify({ mainServerPort: 9000, synInterval: 30 });
    const file = await configFile(content);
    assert.throws(
      () => ConfigStore.open(file),
      (error: unknown) => {
        assert.ok(error instanceof ConfigError);
        assert.deepEqual(error.fields, { synInterval: 'is not a known setting' });
        assert.match(error.message, /synInterval is not a known setting/);
        return true;
      },
    );
    assert.equal(await readFile(file, 'utf8'), content);
  });

  test('an invalid file: ConfigError naming every bad key, file untouched', async () => {
    const content = JSON.stringify({ syncInterval: 5, network: { retryCount: 0, bogus: true }, heartbeat: { interval: 301 } });
    const file = await configFile(content);
    assert.throws(
      () => ConfigStore.open(file),
      (error: unknown) => {
        assert.ok(error instanceof ConfigError);
        assert.deepEqual(Object.keys(error.fields).sort(), ['heartbeat.interval', 'network.bogus', 'network.retryCount', 'syncInterval']);
        assert.match(error.fields['network.bogus'] ?? '', /not a known setting/);
        for (const key of Object.keys(error.fields)) assert.ok(error.message.includes(key), key);
        return true;
      },
    );
    assert.equal(await readFile(file, 'utf8'), content);
  });

  test('update deep-merges, validates, saves and notifies with the changed keys', async () => {
    const file = await configFile({ nodeId: 'node-update01' });
    const store = ConfigStore.open(file);
    const seen: Array<{ changed: string[]; previous: NodeConfig; next: NodeConfig }> = [];
    const unsubscribe = store.onChange((next, previous, changed) => seen.push({ next, previous, changed }));

    const result = store.update({ network: { retryCount: 7 }, heartbeat: { interval: 20 } });
    assert.ok(result.ok);
    assert.deepEqual(result.changed.sort(), ['heartbeat.interval', 'network.retryCount']);
    assert.equal(store.current.network.retryCount, 7);
    assert.equal(store.current.network.retryDelay, 5, 'siblings are kept');
    assert.equal(store.current.heartbeat.timeout, 30);
    const saved = await readJson(file);
    assert.deepEqual(saved.network, { ...store.current.network });
    assert.equal(seen.length, 1);
    assert.equal(seen[0]?.previous.network.retryCount, 3);
    assert.equal(seen[0]?.next.network.retryCount, 7);

    const same = store.update({ network: { retryCount: 7 } });
    assert.ok(same.ok);
    assert.deepEqual(same.changed, []);
    assert.equal(seen.length, 1, 'no change, no notification');

    unsubscribe();
    assert.ok(store.update({ syncInterval: 30 }).ok);
    assert.equal(seen.length, 1, 'unsubscribed');
  });

  test('update rejects invalid values by field and changes nothing', async () => {
    const file = await configFile({ nodeId: 'node-update02' });
    const store = ConfigStore.open(file);
    const before = await readFile(file, 'utf8');
    const snapshot = store.current;
    let notified = 0;
    store.onChange(() => notified++);

    const result = store.update({ network: { retryCount: 99 }, syncInterval: 1, storage: { bogus: 1 }, mainServerIp: 'http://x/' });
    assert.equal(result.ok, false);
    assert.ok(!result.ok);
    assert.deepEqual(Object.keys(result.fields).sort(), ['mainServerIp', 'network.retryCount', 'storage.bogus', 'syncInterval']);
    assert.match(result.fields['network.retryCount'] ?? '', /10/);
    assert.equal(store.current, snapshot);
    assert.equal(await readFile(file, 'utf8'), before);
    assert.equal(notified, 0);

    for (const patch of [null, [], 'text', 5]) {
      const bad = store.update(patch);
      assert.ok(!bad.ok);
      assert.ok('' in bad.fields, JSON.stringify(patch));
    }
  });

  test('update refuses prototype keys at any depth and never pollutes Object.prototype', async () => {
    const store = ConfigStore.open(await configFile({ nodeId: 'node-update03' }));
    const cases: Array<[string, string]> = [
      ['{"__proto__": {"polluted": true}}', '__proto__'],
      ['{"network": {"constructor": {"prototype": {"polluted": true}}}}', 'network.constructor'],
      ['{"storage": {"prototype": 1}}', 'storage.prototype'],
    ];
    for (const [json, key] of cases) {
      const result = store.update(JSON.parse(json));
      assert.ok(!result.ok, json);
      assert.ok(key in result.fields, `${json}: ${JSON.stringify(result.fields)}`);
    }
    assert.equal(({} as Record<string, unknown>).polluted, undefined);
    assert.equal(store.current.nodeId, 'node-update03');
  });

  test('update refuses patches nested thousands of levels deep without overflowing the stack', async () => {
    const file = await configFile({ nodeId: 'node-update05' });
    const store = ConfigStore.open(file);
    const before = await readFile(file, 'utf8');
    for (const text of ['{"storage":'.repeat(20_000) + '1' + '}'.repeat(20_000), '{"x":['.repeat(5_000) + '1' + ']}'.repeat(5_000)]) {
      const result = store.update(JSON.parse(text));
      assert.ok(!result.ok);
      assert.match(result.fields[''] ?? '', /nested deeper than 32 levels/);
    }
    assert.equal(await readFile(file, 'utf8'), before, 'nothing written');
    assert.ok(store.update({ storage: { autoCleanup: false } }).ok, 'ordinary nesting still works');
  });

  test('an update with an unknown key at any level is refused, naming each key', async () => {
    const file = await configFile({ nodeId: 'node-update06' });
    const store = ConfigStore.open(file);
    const before = await readFile(file, 'utf8');
    const result = store.update({ synInterval: 30, storage: { maxsize: 1 }, heartbeat: { interval: 20 } });
    assert.ok(!result.ok);
    assert.deepEqual(result.fields, { synInterval: 'is not a known setting', 'storage.maxsize': 'is not a known setting' });
    assert.equal(await readFile(file, 'utf8'), before, 'nothing written');
  });

  test('mainServerIp and publicIp take a host name, IPv4 or IPv6 address, never a port, scheme, path or spaces', async () => {
    const store = ConfigStore.open(await configFile({ nodeId: 'node-update07' }));
    for (const host of ['127.0.0.1', 'localhost', 'master.example.org', '::1', '2001:db8::5', 'edge-1']) {
      assert.ok(store.update({ mainServerIp: host }).ok, `mainServerIp ${host}`);
      assert.ok(store.update({ publicIp: host }).ok, `publicIp ${host}`);
    }
    assert.ok(store.update({ publicIp: null }).ok, 'publicIp may be null');
    for (const host of ['127.0.0.1:80', 'http://master', 'master/path', 'a b', '[::1]', '', 'host:8000', '999.1.1.1.1:']) {
      for (const key of ['mainServerIp', 'publicIp']) {
        const result = store.update({ [key]: host });
        assert.ok(!result.ok, `${key} ${JSON.stringify(host)} refused`);
        assert.match(result.fields[key] ?? '', /host name, IPv4 or IPv6/, `${key} ${JSON.stringify(host)}: ${JSON.stringify(result.fields)}`);
      }
    }
  });

  test('setting a key to its current value is not a change', async () => {
    const store = ConfigStore.open(await configFile({ nodeId: 'node-update08', nodePort: 8123 }));
    const same = store.update({ nodePort: 8123, storage: { path: store.current.storage.path } });
    assert.ok(same.ok);
    assert.deepEqual(same.changed, []);
    const moved = store.update({ nodePort: 8124 });
    assert.ok(moved.ok);
    assert.deepEqual(moved.changed, ['nodePort']);
  });

  test('the nodeId cannot be cleared by an update', async () => {
    const store = ConfigStore.open(await configFile({ nodeId: 'node-update04' }));
    const result = store.update({ nodeId: null, syncInterval: 20 });
    assert.ok(result.ok);
    assert.equal(store.current.nodeId, 'node-update04');
  });

  test('paths resolve against the config file\'s folder', async () => {
    const file = await configFile({});
    const store = ConfigStore.open(file);
    assert.equal(store.resolvePath('./storage'), path.join(dir, 'storage'));
    assert.equal(store.resolvePath('/var/lib/edge'), '/var/lib/edge');
  });
});

test('pattern errors say the rule, never the regular expression; a bad cron names cron whatever its length', () => {
  const validator = createConfigValidator();
  const fields = (input: unknown) => {
    const result = validator.validate(input);
    assert.equal(result.ok, false);
    return result.ok ? {} : result.fields;
  };
  assert.match(fields({ nodeId: 'a b' }).nodeId ?? '', /^must be 1 to 64 letters, digits/);
  assert.match(fields({ adminToken: 'has spaces in it, sixteen+' }).adminToken ?? '', /visible ASCII characters without spaces/);
  assert.match(fields({ peers: { static: ['no-port'] } })['peers.static.0'] ?? '', /^must be host:port/);
  for (const schedule of ['bad cron', 'x']) {
    assert.match(fields({ preheat: { schedule } })['preheat.schedule'] ?? '', /^must be a cron expression/);
  }
  for (const message of Object.values({ ...fields({ nodeId: 'a b' }), ...fields({ peers: { static: ['x'] } }) })) {
    assert.doesNotMatch(message, /pattern|\^|\$/);
  }
});
