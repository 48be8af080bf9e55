import { Ajv2020 } from 'ajv/dist/2020.js';
import { validate as isCron } from 'node-cron';
import { configSchema, type NodeConfig } from './schema.ts';

export type ValidationResult =
  | { ok: true; value: NodeConfig }
  | { ok: false; fields: Record<string, string> };

export interface ConfigValidator {
  /** Validates a deep copy of `input`; the result has every default filled in. Never mutates input. */
  validate(input: unknown): ValidationResult;
}

/** Builds the validator once per process part that needs it (compiling Ajv schemas is not free). */
export function createConfigValidator(): ConfigValidator {
  const ajv = new Ajv2020({ allErrors: true, useDefaults: true, strict: false });
  const check = ajv.compile(configSchema);
  return {
    validate(input) {
      if (typeof input !== 'object' || input === null || Array.isArray(input)) {
        return { ok: false, fields: { '': 'must be a JSON object' } };
      }
      const copy = structuredClone(input) as Record<string, unknown>;
      if (check(copy)) {
        // A cron expression is more than a JSON Schema pattern can say: node-cron parses it.
        const schedule = (copy as unknown as NodeConfig).preheat.schedule;
        if (!isCron(schedule)) return { ok: false, fields: { 'preheat.schedule': 'must be a cron expression (5 fields, or 6 with seconds)' } };
        return { ok: true, value: copy as unknown as NodeConfig };
      }
      const fields: Record<string, string> = {};
      for (const error of check.errors ?? []) {
        let key = error.instancePath.slice(1).replaceAll('/', '.');
        let message = error.message ?? 'is invalid';
        if (error.keyword === 'additionalProperties') {
          const extra = String((error.params as { additionalProperty?: unknown }).additionalProperty);
          key = key ? `${key}.${extra}` : extra;
          message = 'is not a known setting';
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
