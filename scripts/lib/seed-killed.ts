/**
 * A seed killed mid-serve while another member holds the complete build, for
 * `npm run simulate -- --site` (issue 18: a hand-over keeps the bytes already received).
 *
 * Three nodes hold a meeting's package; one of them (C, last in the meeting's rendezvous order)
 * loses it and fetches it again from the seed S, whose address is a throttling proxy in front of
 * it (so the stream can be cut at a chosen point: loopback alone would move 10 MiB at once). After
 * --freeze-at of the package, S's proxy resets every connection and refuses new ones, as a killed
 * process would. C hands over to B, the next member, which holds the build: what C fetched from
 * siblings for the build, what the master sent, and how long until C serves.
 */
import { mkdtemp, writeFile } from 'node:fs/promises';
import { createServer, connect, type Socket } from 'node:net';
import path from 'node:path';
import { Transform, type TransformCallback } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { createReferenceMaster } from '../../reference-master/master.ts';
import { EdgeNode } from '../../src/edge-node.ts';
import { MemoryLogger } from '../../src/log/memory-logger.ts';
import { rendezvousOrder } from '../../src/site/rendezvous.ts';
import { newSiteKey } from '../../src/site/site-key.ts';
import { loopbackConfig } from './loopback-config.ts';
import { waitUntil, type FaultOptions } from './site-faults.ts';

export interface KilledSeedRun {
  size: number;
  /** Bytes C had from S when S was killed. */
  bytesAtKill: number;
  /** Package bytes C received from siblings for the build (S's and B's). */
  peerBytes: number;
  /** Package bytes the master sent while C fetched again. */
  masterBytes: number;
  /** Bytes C kept of S's package and did not fetch again (0 without the resume). */
  resumedBytes: number;
  /** From the kill to C serving the build again. */
  serveAfterKillMs: number;
}

/** Slows what passes through it to `rate()` bytes per second (0: as fast as it comes). */
class Throttle extends Transform {
  readonly #rate: () => number;

  constructor(rate: () => number) {
    super();
    this.#rate = rate;
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    const rate = this.#rate();
    if (rate <= 0) return callback(null, chunk);
    let offset = 0;
    const next = () => {
      if (offset >= chunk.length || this.destroyed) return callback();
      const piece = chunk.subarray(offset, offset + 16 * 1024);
      offset += piece.length;
      this.push(piece);
      setTimeout(next, (piece.length / rate) * 1000);
    };
    next();
  }
}

/** A TCP proxy on loopback in front of `target()`: its answers throttled to `rate()`; kill() resets everything and refuses from then on. */
async function throttlingProxy(target: () => number, rate: () => number): Promise<{ port: number; kill: () => void }> {
  const sockets = new Set<Socket>();
  const server = createServer((client) => {
    const upstream = connect(target(), '127.0.0.1');
    for (const socket of [client, upstream]) {
      sockets.add(socket);
      socket.on('close', () => sockets.delete(socket));
      socket.on('error', () => {});
    }
    client.pipe(upstream);
    upstream.pipe(new Throttle(rate)).pipe(client);
    client.on('close', () => upstream.destroy());
    upstream.on('close', () => client.destroy());
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as { port: number }).port;
  let killed = false;
  return {
    port,
    kill: () => {
      if (killed) return;
      killed = true;
      server.close();
      for (const socket of sockets) socket.resetAndDestroy();
    },
  };
}

export async function killedSeedRun(options: FaultOptions): Promise<KilledSeedRun> {
  const master = createReferenceMaster({ packageRateBytesPerSec: options.rate, tokenCheckIntervalMs: 100, tokenSettleMs: 100, tokenMaxWaitMs: 3_000 });
  const { port } = await master.listen(0, '127.0.0.1');
  const key = newSiteKey();
  let seedPort = 0;
  let throttle = 0;
  const proxy = await throttlingProxy(
    () => seedPort,
    () => throttle,
  );
  const nodes: EdgeNode[] = [];
  try {
    for (let i = 0; i < 3; i++) {
      const dir = await mkdtemp(path.join(options.root, `killed-${i}-`));
      const configPath = path.join(dir, 'node_config.json');
      // Node 0 (S) registers the proxy's port: siblings reach it only through the proxy.
      const config = loopbackConfig(port, { syncInterval: 3600, peers: { key }, network: { retryDelay: 0.2, connectionTimeout: 2, downloadTimeout: 300 }, ...(i === 0 ? { publicPort: proxy.port } : {}) });
      await writeFile(configPath, JSON.stringify(config));
      const node = await EdgeNode.start({ configPath, port: 0, host: '127.0.0.1', logger: new MemoryLogger((line) => options.trace(`node${i}`, line)), adminToken: 'simulate-seed-killed-admin-token' });
      if (i === 0) seedPort = Number(new URL(node.localUrl).port);
      nodes.push(node);
    }
    await waitUntil('nodes registered', () => master.nodes().filter((n) => n.online).length === 3, 20_000);
    await sleep(3_500);
    const [s, b, c] = nodes as [EdgeNode, EdgeNode, EdgeNode];
    // S seeds the meeting, B comes next, C last: C's hand-over goes to B.
    let i = 0;
    while (rendezvousOrder(`killed-${i}`, [s.address, b.address, c.address]).join() !== [s.address, b.address, c.address].join()) i++;
    const id = `killed-${i}`;
    master.addMeeting({ id, title: 'Seed killed', packageSizeBytes: options.sizeBytes });
    await master.startMeeting(id);
    const build = master.meeting(id)?.package;
    if (!build) throw new Error('no build');
    await Promise.all(nodes.map((node) => node.syncNow()));
    await waitUntil('every node holds the build', () => nodes.every((node) => node.store.get(id)?.sha256 === build.sha256), 300_000);

    // C loses its copy (a node whose storage was wiped) and fetches it again from S, slowed.
    await c.store.remove(id, 'simulate: C lost its copy');
    throttle = options.rate;
    master.resetStats();
    const peerBefore = c.jobs.fetchedBytes.peer;
    options.trace('sim', 'C fetches again');
    await c.syncNow();
    let bytesAtKill = 0;
    await waitUntil(
      'C has part of the package from S',
      () => {
        const job = c.jobs.inFlight(id);
        bytesAtKill = job?.source.kind === 'peer' ? job.bytesWritten : 0;
        return bytesAtKill >= options.freezeAt * build.size;
      },
      120_000,
      5,
    );
    proxy.kill();
    const killedAt = Date.now();
    options.trace('sim', `S killed after ${bytesAtKill} bytes to C`);
    await waitUntil('C serves the build again', () => c.store.get(id)?.sha256 === build.sha256, 300_000, 10);
    return {
      size: build.size,
      bytesAtKill,
      peerBytes: c.jobs.fetchedBytes.peer - peerBefore,
      masterBytes: master.stats().packageBytesByBuild[build.buildId] ?? 0,
      resumedBytes: c.site.counters.resumedBytes ?? 0,
      serveAfterKillMs: Date.now() - killedAt,
    };
  } finally {
    proxy.kill();
    await Promise.all(nodes.map((node) => node.stop()));
    await master.close();
  }
}
