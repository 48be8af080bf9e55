/**
 * A minimal request/response channel over a forked child's IPC pipe: the bench runs the node and
 * the reference master in their own processes (so their CPU and memory can be measured apart from
 * the load) and drives them through it.
 */
import { fork, type ChildProcess } from 'node:child_process';
import { EventEmitter } from 'node:events';

type Handlers = Record<string, (...args: never[]) => unknown>;

interface CallMessage {
  id: number;
  method: string;
  args: unknown[];
}

type ReplyMessage = { id: number; result: unknown } | { id: number; error: string };
type EventMessage = { event: string; data: unknown };

/** Child side: answers calls with the handlers; `emit` sends an event to the parent. */
export function serveRpc(handlers: Handlers): { emit(event: string, data: unknown): void } {
  process.on('message', (message: CallMessage) => {
    const handler = handlers[message.method] as ((...args: unknown[]) => unknown) | undefined;
    const reply = (payload: Omit<ReplyMessage, 'id'>) => process.send?.({ id: message.id, ...payload });
    if (!handler) return reply({ error: `no method ${message.method}` });
    Promise.resolve()
      .then(() => handler(...message.args))
      .then(
        (result) => reply({ result: result ?? null }),
        (error: unknown) => reply({ error: error instanceof Error ? error.message : String(error) }),
      );
  });
  // The parent going away ends the child: no orphaned servers after a crashed bench.
  process.on('disconnect', () => process.exit(0));
  return { emit: (event, data) => process.send?.({ event, data } satisfies EventMessage) };
}

/** Parent side of one forked child. */
export class RpcChild {
  readonly child: ChildProcess;
  readonly events = new EventEmitter();
  /** Every event received, in order: a waiter that starts late still finds what it waits for. */
  readonly history: Array<{ event: string; data: unknown; receivedAt: number }> = [];
  #nextId = 1;
  #pending = new Map<number, { resolve: (value: unknown) => void; reject: (error: Error) => void }>();
  #exited: Promise<void>;

  private constructor(child: ChildProcess) {
    this.child = child;
    this.events.setMaxListeners(0);
    child.on('message', (message: ReplyMessage | EventMessage) => {
      if ('event' in message) {
        this.history.push({ event: message.event, data: message.data, receivedAt: Date.now() });
        this.events.emit(message.event, message.data);
        return;
      }
      const pending = this.#pending.get(message.id);
      if (!pending) return;
      this.#pending.delete(message.id);
      if ('error' in message) pending.reject(new Error(message.error));
      else pending.resolve(message.result);
    });
    this.#exited = new Promise((resolve) => {
      child.once('exit', () => {
        for (const pending of this.#pending.values()) pending.reject(new Error('child exited'));
        this.#pending.clear();
        resolve();
      });
    });
  }

  /**
   * Forks `script` under tsx and waits for its `ready` event (whose data it returns). `netns`: in
   * that network namespace (`ip netns exec`, which keeps the IPC descriptor and environment).
   */
  static async start<T>(script: string, args: string[], options: { env?: NodeJS.ProcessEnv; stderr?: (text: string) => void; netns?: string } = {}): Promise<{ rpc: RpcChild; ready: T }> {
    const nodeArgs = ['--import', 'tsx', ...(process.env.BENCH_CHILD_ARGS?.split(' ').filter(Boolean) ?? [])];
    const child = fork(script, args, {
      ...(options.netns ? { execPath: 'ip' } : {}),
      // BENCH_CHILD_ARGS="--cpu-prof --cpu-prof-dir=/tmp/prof" profiles the servers under load.
      execArgv: options.netns ? ['netns', 'exec', options.netns, process.execPath, ...nodeArgs] : nodeArgs,
      stdio: ['ignore', 'inherit', 'pipe', 'ipc'],
      env: options.env ?? process.env,
    });
    let stderr = '';
    child.stderr?.setEncoding('utf8').on('data', (text: string) => {
      stderr = (stderr + text).slice(-8000);
      options.stderr?.(text);
    });
    const rpc = new RpcChild(child);
    const ready = await new Promise<T>((resolve, reject) => {
      rpc.events.once('ready', (data: T) => resolve(data));
      child.once('exit', (code) => reject(new Error(`${script} exited (${code}) before ready: ${stderr}`)));
    });
    return { rpc, ready };
  }

  get pid(): number {
    return this.child.pid ?? 0;
  }

  /** The first event (past or future) named `event` whose data satisfies `match`. */
  waitEvent<T>(event: string, match: (data: T) => boolean, timeoutMs: number): Promise<T> {
    const past = this.history.find((entry) => entry.event === event && match(entry.data as T));
    if (past) return Promise.resolve(past.data as T);
    return new Promise<T>((resolve, reject) => {
      const listener = (data: T) => {
        if (!match(data)) return;
        clearTimeout(timer);
        this.events.off(event, listener);
        resolve(data);
      };
      const timer = setTimeout(() => {
        this.events.off(event, listener);
        reject(new Error(`no ${event} event within ${timeoutMs} ms`));
      }, timeoutMs);
      this.events.on(event, listener);
    });
  }

  call<T = unknown>(method: string, ...args: unknown[]): Promise<T> {
    const id = this.#nextId++;
    return new Promise<T>((resolve, reject) => {
      this.#pending.set(id, { resolve: resolve as (value: unknown) => void, reject });
      this.child.send({ id, method, args } satisfies CallMessage);
    });
  }

  /** Asks the child to exit, then kills it if it has not within the grace time. */
  async stop(graceMs = 5_000): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    this.child.kill('SIGTERM');
    const timer = setTimeout(() => this.child.kill('SIGKILL'), graceMs);
    await this.#exited;
    clearTimeout(timer);
  }
}
