/**
 * nginx as the bench's comparison: the best static file server on the same machine, serving the
 * same file with `sendfile on`. Optional: Debian's `nginx` package (`--install-nginx` installs it).
 */
import { execFileSync, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

const CANDIDATES = ['/usr/sbin/nginx', '/usr/local/sbin/nginx', '/usr/local/nginx/sbin/nginx', '/usr/bin/nginx'];

export function findNginx(): string | null {
  for (const candidate of CANDIDATES) if (existsSync(candidate)) return candidate;
  try {
    const found = execFileSync('sh', ['-c', 'command -v nginx'], { encoding: 'utf8' }).trim();
    return found || null;
  } catch {
    return null;
  }
}

export function nginxVersion(binary: string): string {
  // nginx prints its version on stderr (and exits 0).
  const { stdout, stderr } = spawnSync(binary, ['-v'], { encoding: 'utf8' });
  return `${stdout}${stderr}`.trim().replace(/^nginx version: /, '') || 'nginx (unknown version)';
}

/** apt-get install nginx (Debian); needs root. Throws with apt's output on failure. */
export function installNginx(log: (line: string) => void): void {
  if (process.getuid?.() !== 0) throw new Error('--install-nginx needs root (apt-get install nginx)');
  log('installing nginx with apt-get (Debian package "nginx") ...');
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  execFileSync('apt-get', ['update', '-qq'], { stdio: 'inherit', env });
  execFileSync('apt-get', ['install', '-y', '-qq', 'nginx'], { stdio: 'inherit', env });
}

export interface NginxSite {
  /** URL path -> absolute file path served at that exact path. */
  files?: Record<string, string>;
  /**
   * Serve `/api/v1/meetings/<id>/download-package-direct` from `<packagesDir>/<id>.zip` (a
   * symlink to the master's file): nginx as the master's package origin.
   */
  packagesDir?: string;
  /** Proxy every other path to this loopback port (used to put nginx in front of the master). */
  proxyPort?: number;
}

export class Nginx {
  readonly port: number;
  readonly #process: ChildProcess;

  private constructor(port: number, child: ChildProcess) {
    this.port = port;
    this.#process = child;
  }

  /** nginx with two workers (one per core), sendfile, keep-alive, no access log. */
  /** `netns`: in that network namespace (its loopback), readiness then judged by the pid file. */
  static async start(binary: string, dir: string, site: NginxSite, netns?: string): Promise<Nginx> {
    await mkdir(dir, { recursive: true });
    const port = await freePort();
    const locations = Object.entries(site.files ?? {})
      .map(([urlPath, file]) => `    location = ${urlPath} { alias ${file}; default_type application/zip; }`)
      .join('\n');
    const packages = site.packagesDir
      ? `    location ~ ^/api/v1/meetings/([A-Za-z0-9_-]+)/download-package-direct$ { alias ${site.packagesDir}/$1.zip; default_type application/zip; }`
      : '';
    const proxy = site.proxyPort
      ? `    location / { proxy_pass http://127.0.0.1:${site.proxyPort}; proxy_http_version 1.1; proxy_set_header Connection ""; proxy_buffering off; }`
      : '';
    const conf = `
${process.getuid?.() === 0 ? 'user root;' : ''}
worker_processes auto;
worker_rlimit_nofile 20000;
daemon off;
pid ${dir}/nginx.pid;
error_log ${dir}/error.log warn;
events { worker_connections 8192; multi_accept on; }
http {
  access_log off;
  sendfile on;
  tcp_nopush on;
  tcp_nodelay on;
  keepalive_timeout 65;
  keepalive_requests 1000000;
  client_body_temp_path ${dir}/body;
  proxy_temp_path ${dir}/proxy;
  fastcgi_temp_path ${dir}/fastcgi;
  uwsgi_temp_path ${dir}/uwsgi;
  scgi_temp_path ${dir}/scgi;
  server {
    listen 127.0.0.1:${port} backlog=4096;
${locations}
${packages}
${proxy}
  }
}
`;
    const confPath = path.join(dir, 'nginx.conf');
    await writeFile(confPath, conf);
    const args = ['-c', confPath, '-p', dir];
    const child = netns ? spawn('ip', ['netns', 'exec', netns, binary, ...args], { stdio: ['ignore', 'ignore', 'pipe'] }) : spawn(binary, args, { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr?.setEncoding('utf8').on('data', (text: string) => {
      stderr += text;
    });
    const deadline = Date.now() + 10_000;
    const ready = netns ? async () => existsSync(path.join(dir, 'nginx.pid')) && (await sleep(200), true) : () => canConnect(port);
    while (!(await ready())) {
      if (child.exitCode !== null || Date.now() > deadline) {
        child.kill('SIGKILL');
        const log = existsSync(path.join(dir, 'error.log')) ? readFileSync(path.join(dir, 'error.log'), 'utf8') : '';
        throw new Error(`nginx did not start: ${stderr}${log}`);
      }
      await sleep(50);
    }
    return new Nginx(port, child);
  }

  /** The master process and its workers (CPU and memory are summed over all of them). */
  pids(): number[] {
    const master = this.#process.pid;
    if (!master) return [];
    try {
      const children = execFileSync('pgrep', ['-P', String(master)], { encoding: 'utf8' })
        .split('\n')
        .filter(Boolean)
        .map(Number);
      return [master, ...children];
    } catch {
      return [master];
    }
  }

  async stop(): Promise<void> {
    if (this.#process.exitCode !== null) return;
    const exited = new Promise<void>((resolve) => this.#process.once('exit', () => resolve()));
    this.#process.kill('SIGQUIT');
    const timer = setTimeout(() => this.#process.kill('SIGKILL'), 5_000);
    await exited;
    clearTimeout(timer);
  }
}

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

function canConnect(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect(port, '127.0.0.1');
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}
