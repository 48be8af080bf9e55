import type { EventEmitter } from 'node:events';
import type { Logger } from '../log/logger.ts';
import type { NodeEventMap } from '../node-events.ts';
import type { Preheater } from '../sync/preheat.ts';
import { CronTask } from './cron-task.ts';

/**
 * When the preheater reads the master's meeting list: at start, then on preheat.schedule; at once
 * again when a preheat.* setting changes; not while the operator has stopped the service.
 */
export class PreheatSchedule extends CronTask {
  constructor(preheater: Pick<Preheater, 'scan'>, schedule: () => string, events: EventEmitter<NodeEventMap>, logger: Logger) {
    super('preheat', schedule, () => preheater.scan(), logger);
    events.on('service', ({ serving }) => (serving ? this.begin() : this.stop()));
    events.on('config', ({ changed }) => {
      if (!changed.some((key) => key === 'preheat' || key.startsWith('preheat.'))) return;
      this.reschedule();
      void this.runNow();
    });
  }

  /** The first scan now, the next ones on the schedule. */
  begin(): void {
    this.start();
    void this.runNow();
  }
}
