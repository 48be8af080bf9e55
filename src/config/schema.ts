/**
 * The one JSON Schema for node_config.json: types, defaults and ranges. The file loader, conf and
 * (later) the config API all validate with it, so a key documented here means the same everywhere.
 *
 * Keys and meanings are the reference node's, so its node_config.json loads unchanged. Defaults are
 * the reference's too, except the master (loopback, 127.0.0.1:8000) and the ones noted below.
 */

const port = { type: 'integer', minimum: 1, maximum: 65535 } as const;

/** What a host setting must be; validate.ts reports a failed `anyOf` of these formats with HOST_RULE. */
const hostFormats = [{ format: 'hostname' }, { format: 'ipv4' }, { format: 'ipv6' }] as const;
export const HOST_RULE = 'must be a host name, IPv4 or IPv6 address (no port, scheme, path or spaces)';

/** A site key (peers.key, EDGE_SITE_KEY): base64 of 32 bytes, 44 characters (site/site-key.ts). */
export const SITE_KEY_PATTERN = '^[A-Za-z0-9+/]{42}[AEIMQUYcgkosw048]=$';
export const SITE_KEY_RULE = 'must be 32 bytes in base64 (44 characters ending with =); make one with: node start.js --new-site-key';

export const configSchema = {
  type: 'object',
  // A typo such as synInterval would otherwise be saved and silently do nothing.
  additionalProperties: false,
  properties: {
    mainServerIp: {
      type: 'string',
      minLength: 1,
      maxLength: 253,
      // Host name, IPv4 or bracket-less IPv6 (ajv-formats): no scheme, path, port or whitespace.
      anyOf: hostFormats,
      default: '127.0.0.1',
      description: 'Host or IP of the meeting master.',
    },
    mainServerPort: { ...port, default: 8000, description: 'Port of the meeting master.' },
    syncInterval: {
      type: 'integer',
      minimum: 10,
      maximum: 3600,
      default: 10,
      description: 'Seconds between polls of the master for active meetings.',
    },
    // Not in the reference: the master changes the room's token only after every node reported a
    // started meeting as synced, so the time a node takes to notice the start delays every tablet.
    watchInterval: {
      type: 'integer',
      minimum: 0,
      maximum: 60,
      default: 2,
      description:
        'Seconds between quick checks of the master for a started or ended meeting, between the full polls (0: off, only syncInterval).',
    },
    nodeId: {
      type: ['string', 'null'],
      pattern: '^[A-Za-z0-9._-]{1,64}$',
      default: null,
      description: 'Generated as node-xxxxxxxx on first start and persisted.',
    },
    // The reference's code said 80 but its docs and operators use 8001; 8001 needs no root.
    nodePort: { ...port, default: 8001, description: 'Port the node listens on (--port overrides).' },
    publicIp: {
      type: ['string', 'null'],
      maxLength: 253,
      anyOf: hostFormats,
      default: null,
      description: 'Address to register when usePublicAddress is true.',
    },
    publicPort: {
      type: ['integer', 'null'],
      minimum: 1,
      maximum: 65535,
      default: null,
      description: 'Port to register when usePublicAddress is true (null: the listening port).',
    },
    usePublicAddress: { type: 'boolean', default: false },
    adminToken: {
      type: ['string', 'null'],
      minLength: 16,
      maxLength: 256,
      // Sent in an HTTP header: visible ASCII only, no spaces.
      pattern: '^[\\x21-\\x7E]+$',
      default: null,
      description: 'Bearer token of the admin API and control panel (env EDGE_ADMIN_TOKEN wins); generated on first start when null.',
    },
    metricsPublic: { type: 'boolean', default: true, description: 'false: /metrics needs the admin token too.' },
    storage: {
      type: 'object',
      additionalProperties: false,
      default: {},
      properties: {
        path: { type: 'string', minLength: 1, maxLength: 4096, default: './storage' },
        maxSize: { type: 'integer', minimum: 0, default: 10737418240, description: 'Bytes; 0 = no quota.' },
        cleanupThreshold: { type: 'number', minimum: 0.1, maximum: 1, default: 0.9 },
        autoCleanup: { type: 'boolean', default: true },
      },
    },
    network: {
      type: 'object',
      additionalProperties: false,
      default: {},
      properties: {
        // The reference's code said 100, its docs 3; a slow master is better served by few streams.
        maxConcurrentDownloads: { type: 'integer', minimum: 1, maximum: 100, default: 3 },
        downloadTimeout: {
          type: 'integer',
          minimum: 5,
          maximum: 3600,
          default: 300,
          description: 'Idle seconds: abort a download after this long without a byte.',
        },
        connectionTimeout: { type: 'integer', minimum: 1, maximum: 300, default: 10 },
        retryCount: { type: 'integer', minimum: 1, maximum: 10, default: 3, description: 'Attempts per sync.' },
        retryDelay: { type: 'number', minimum: 0, maximum: 600, default: 5, description: 'Seconds; doubles per attempt.' },
      },
    },
    logging: {
      type: 'object',
      additionalProperties: false,
      default: {},
      properties: {
        level: {
          type: 'string',
          enum: ['DEBUG', 'INFO', 'WARNING', 'WARN', 'ERROR', 'CRITICAL', 'debug', 'info', 'warning', 'warn', 'error', 'critical'],
          default: 'INFO',
        },
        fileEnabled: { type: 'boolean', default: true },
        filePath: { type: 'string', minLength: 1, maxLength: 4096, default: './logs/node.log' },
        maxFileSize: { type: 'integer', minimum: 1024, default: 10485760 },
        backupCount: { type: 'integer', minimum: 0, maximum: 100, default: 5 },
        format: {
          type: 'string',
          enum: ['text', 'json'],
          default: 'text',
          description: 'text: one readable line per entry; json: one JSON object per line (log shippers).',
        },
      },
    },
    heartbeat: {
      type: 'object',
      additionalProperties: false,
      default: {},
      properties: {
        interval: { type: 'integer', minimum: 10, maximum: 300, default: 10 },
        timeout: { type: 'integer', minimum: 1, maximum: 300, default: 30, description: 'Seconds per heartbeat request.' },
      },
    },
    cleanup: {
      type: 'object',
      additionalProperties: false,
      default: {},
      properties: {
        enabled: { type: 'boolean', default: true },
        cleanOnStartup: { type: 'boolean', default: true },
        cleanEndedMeetings: { type: 'boolean', default: true },
      },
    },
    maintenance: {
      type: 'object',
      additionalProperties: false,
      default: {},
      properties: {
        // A cron expression; validate.ts checks it with node-cron (the schema cannot).
        scrubSchedule: {
          type: 'string',
          minLength: 1,
          maxLength: 200,
          default: '30 3 * * *',
          description: 'Cron schedule (local time) of the scrub: every stored package re-hashed against its manifest.',
        },
      },
    },
    // Not in the reference: the site tier (issue 12). Nodes sharing a master fetch each package
    // from the master once: the meeting's seed does, the others fetch from the seed.
    peers: {
      type: 'object',
      additionalProperties: false,
      default: {},
      properties: {
        enabled: {
          type: 'boolean',
          default: true,
          description: 'Fetch packages from a sibling node of the site (the meeting\'s seed) instead of each node from the master.',
        },
        static: {
          type: 'array',
          maxItems: 64,
          uniqueItems: true,
          items: { type: 'string', maxLength: 260, pattern: '^(\\[[0-9A-Fa-f:.]+\\]|[A-Za-z0-9.-]+):[0-9]{1,5}$' },
          default: [],
          description: 'Siblings as host:port, in addition to the master\'s node list (for sites where that list is not usable).',
        },
        connectTimeout: {
          type: 'integer',
          minimum: 1,
          maximum: 60,
          default: 2,
          description: 'Seconds to connect to a sibling before fetching from the master instead.',
        },
        // A secret: never shown by the API, the panel, diagnostics or the log (write-only).
        key: {
          type: ['string', 'null'],
          pattern: SITE_KEY_PATTERN,
          default: null,
          description:
            'The site key (base64 of 32 random bytes, from `node start.js --new-site-key`), the same on every node of the site (env EDGE_SITE_KEY wins). null: the site tier is off.',
        },
        previousKeys: {
          type: 'array',
          maxItems: 3,
          uniqueItems: true,
          items: { type: 'string', pattern: SITE_KEY_PATTERN },
          default: [],
          description: 'Earlier site keys still accepted from siblings (never used to sign), while a new key is rolled out node by node.',
        },
        stallTimeout: {
          type: 'integer',
          minimum: 1,
          maximum: 60,
          default: 5,
          description: 'Seconds without a byte from the seed before its health is asked; no answer: the package is taken from the next member.',
        },
      },
    },
    // Not in the reference: fetch the packages of meetings scheduled soon before they start.
    preheat: {
      type: 'object',
      additionalProperties: false,
      default: {},
      properties: {
        enabled: { type: 'boolean', default: true, description: 'Fetch the packages of meetings not started yet, ahead of their start.' },
        hoursAhead: { type: 'number', minimum: 0, maximum: 720, default: 24, description: 'Preheat meetings scheduled up to this many hours ahead.' },
        hoursBehind: {
          type: 'number',
          minimum: 0,
          maximum: 720,
          default: 12,
          description: 'And meetings scheduled up to this many hours ago that have not started yet.',
        },
        schedule: {
          type: 'string',
          // A cron expression; validate.ts checks it with node-cron (the schema cannot).
          minLength: 1,
          maxLength: 200,
          default: '*/5 * * * *',
          description: 'When to read the master\'s meeting list (cron, node\'s local time); also once at start.',
        },
      },
    },
  },
} as const;

export type LogLevelName = (typeof configSchema.properties.logging.properties.level.enum)[number];

/** The validated, defaults-filled config (what the schema guarantees). */
export interface NodeConfig {
  mainServerIp: string;
  mainServerPort: number;
  syncInterval: number;
  watchInterval: number;
  nodeId: string | null;
  nodePort: number;
  publicIp: string | null;
  publicPort: number | null;
  usePublicAddress: boolean;
  adminToken: string | null;
  metricsPublic: boolean;
  storage: { path: string; maxSize: number; cleanupThreshold: number; autoCleanup: boolean };
  network: {
    maxConcurrentDownloads: number;
    downloadTimeout: number;
    connectionTimeout: number;
    retryCount: number;
    retryDelay: number;
  };
  logging: { level: LogLevelName; fileEnabled: boolean; filePath: string; maxFileSize: number; backupCount: number; format: 'text' | 'json' };
  heartbeat: { interval: number; timeout: number };
  cleanup: { enabled: boolean; cleanOnStartup: boolean; cleanEndedMeetings: boolean };
  maintenance: { scrubSchedule: string };
  peers: { enabled: boolean; static: string[]; connectTimeout: number; key: string | null; previousKeys: string[]; stallTimeout: number };
  preheat: { enabled: boolean; hoursAhead: number; hoursBehind: number; schedule: string };
}
