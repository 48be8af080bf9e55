import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { MemoryLogger } from '../log/memory-logger.ts';
import { CronTask, isCronExpression } from './cron-task.ts';

const logger = new MemoryLogger();

describe('CronTask', () => {
  test('cron expressions: five or six fields accepted, nonsense refused', () => {
    assert.equal(isCronExpression('*/5 * * * *'), true);
    assert.equal(isCronExpression('0 3 * * *'), true);
    assert.equal(isCronExpression('*/1 * * * * *'), true);
    assert.equal(isCronExpression('every 5 minutes'), false);
    assert.equal(isCronExpression('61 * * * *'), false);
  });

  test('runs on its schedule, never two runs at once, and stops', async () => {
    let runs = 0;
    let running = 0;
    let most = 0;
    const task = new CronTask(
      'test',
      () => '* * * * * *',
      async () => {
        runs++;
        running++;
        most = Math.max(most, running);
        await new Promise((resolve) => setTimeout(resolve, 1_500));
        running--;
      },
      logger,
    );
    task.start();
    assert.ok(task.nextRunAt() instanceof Date);
    await new Promise((resolve) => setTimeout(resolve, 3_300));
    task.stop();
    await task.idle();
    assert.ok(runs >= 1, `${runs} runs`);
    assert.equal(most, 1);
    assert.equal(task.nextRunAt(), null);
    const after = runs;
    await new Promise((resolve) => setTimeout(resolve, 1_200));
    assert.equal(runs, after, 'no run after stop');
  });

  test('runNow joins a run in progress and logs a failure instead of throwing', async () => {
    let runs = 0;
    const task = new CronTask(
      'test',
      () => '0 0 1 1 *',
      async () => {
        runs++;
        await new Promise((resolve) => setTimeout(resolve, 20));
        throw new Error('boom');
      },
      logger,
    );
    await Promise.all([task.runNow(), task.runNow()]);
    assert.equal(runs, 1);
  });
});
