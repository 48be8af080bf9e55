import assert from 'node:assert/strict';
import { describe, test, type TestContext } from 'node:test';
import { MemoryLogger } from '../log/memory-logger.ts';
import { CronTask, isCronExpression } from './cron-task.ts';

const logger = new MemoryLogger();

/** Moves the mocked clock on by `ms`, then lets the callbacks it fired run (setImmediate is not mocked). */
async function tick(t: TestContext, ms: number): Promise<void> {
  t.mock.timers.tick(ms);
  for (let turn = 0; turn < 3; turn++) await new Promise((resolve) => setImmediate(resolve));
}

describe('CronTask', () => {
  test('cron expressions: five or six fields accepted, nonsense refused', () => {
    assert.equal(isCronExpression('*/5 * * * *'), true);
    assert.equal(isCronExpression('0 3 * * *'), true);
    assert.equal(isCronExpression('*/1 * * * * *'), true);
    assert.equal(isCronExpression('every 5 minutes'), false);
    assert.equal(isCronExpression('61 * * * *'), false);
  });

  test('runs on its schedule, never two runs at once, and stops', async (t) => {
    // The schedule's clock is the test's: node-cron reads Date and arms setTimeout.
    t.mock.timers.enable({ apis: ['setTimeout', 'Date'], now: Date.parse('2026-01-01T00:00:00.500Z') });
    let runs = 0;
    let running = 0;
    let most = 0;
    let finish: () => void = () => {};
    const task = new CronTask(
      'test',
      () => '* * * * * *',
      async () => {
        runs++;
        running++;
        most = Math.max(most, running);
        // Held until the test ends it: a run longer than the schedule's period.
        await new Promise<void>((resolve) => (finish = resolve));
        running--;
      },
      logger,
    );
    task.start();
    assert.ok(task.nextRunAt() instanceof Date);
    for (let second = 0; second < 3; second++) await tick(t, 1_000);
    assert.equal(runs, 1, 'the ticks during a run start no other');
    finish();
    await task.idle();
    await tick(t, 0); // node-cron's own bookkeeping of the run's end
    await tick(t, 1_000);
    assert.equal(runs, 2, 'the first tick after it ended runs again');
    task.stop();
    finish();
    await task.idle();
    assert.equal(most, 1);
    assert.equal(task.nextRunAt(), null);
    const after = runs;
    for (let second = 0; second < 3; second++) await tick(t, 1_000);
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
