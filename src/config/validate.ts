import { Ajv2020 } from 'ajv/dist/2020.js';
import ajvFormats from 'ajv-formats';
import { validate as isCronExpression } from 'node-cron';
import { configSchema, HOST_RULE, SITE_KEY_RULE, type NodeConfig } from './schema.ts';

export type ValidationResult =
  | { ok: true; value: NodeConfig }
  | { ok: false; fields: Record<string, string> };

export interface ConfigValidator {
  /** Validates a deep copy of `input`; the result has every default filled in. Never mutates input. */
  validate(input: unknown): ValidationResult;
}

/** What each pattern of the schema means, said as a rule (Ajv would quote the regular expression). */
const PATTERN_RULES: Record<string, string> = {
  '#/properties/nodeId/pattern': 'must be 1 to 64 letters, digits, ".", "_" or "-"',
  '#/properties/adminToken/pattern': 'must be visible ASCII characters without spaces',
  '#/properties/peers/properties/key/pattern': SITE_KEY_RULE,
  '#/properties/peers/properties/previousKeys/items/pattern': SITE_KEY_RULE,
  '#/properties/peers/properties/static/items/pattern': 'must be host:port: a host name or IPv4 address (or an IPv6 address in brackets), a colon, the port',
};

/** Builds the validator once per process part that needs it (compiling Ajv schemas is not free). */
export function createConfigValidator(): ConfigValidator {
  const ajv = new Ajv2020({ allErrors: true, useDefaults: true, strict: false });
  // The same formats conf registers, so both read the schema alike (hostname, ipv4, ipv6).
  ajvFormats.default(ajv);
  const check = ajv.compile(configSchema);
  return {
    validate(input) {
      if (typeof input !== 'object' || input === null || Array.isArray(input)) {
        return { ok: false, fields: { '': 'must be a JSON object' } };
      }
      const copy = structuredClone(input) as Record<string, unknown>;
      if (check(copy)) {
        // A cron expression is more than a JSON Schema pattern can say: node-cron parses it.
        const value = copy as unknown as NodeConfig;
        const cronFields: Array<[string, string]> = [
          ['maintenance.scrubSchedule', value.maintenance.scrubSchedule],
          ['preheat.schedule', value.preheat.schedule],
        ];
        for (const [field, schedule] of cronFields) {
          if (!isCronExpression(schedule)) {
            return { ok: false, fields: { [field]: `must be a cron expression (5 fields, or 6 with seconds), e.g. "30 3 * * *"; got ${JSON.stringify(schedule)}` } };
          }
        }
        return { ok: true, value };
      }
      const fields: Record<string, string> = {};
      for (const error of check.errors ?? []) {
        let key = error.instancePath.slice(1).replaceAll('/', '.');
        let message = error.message ?? 'is invalid';
        // Each failed branch of the host anyOf reports its own format; one rule says it better.
        if (error.keyword === 'format' && error.schemaPath.includes('/anyOf/')) continue;
        if (error.keyword === 'anyOf') {
          message = HOST_RULE;
        } else if (error.keyword === 'additionalProperties') {
          const extra = String((error.params as { additionalProperty?: unknown }).additionalProperty);
          key = key ? `${key}.${extra}` : extra;
          message = 'is not a known setting';
        } else if (error.keyword === 'pattern' && PATTERN_RULES[error.schemaPath]) {
          message = PATTERN_RULES[error.schemaPath]!;
        } else if (error.keyword === 'enum') {
          message = `must be one of ${(error.params as { allowedValues: unknown[] }).allowedValues.join(', ')}`;
        }
        fields[key] ??= message.replace('<=', '≤').replace('>=', '≥');
      }
      return { ok: false, fields };
    },
  };
}

export function describeFieldErrors(fields: Record<string, string>): string {
  return Object.entries(fields)
    .map(([key, message]) => `${key || '(root)'} ${message}`)
    .join('; ');
}
