import assert from 'node:assert/strict';
import { test } from 'node:test';
import { MemoryLogger } from '../log/memory-logger.ts';
import { PeriodicTask } from './scheduler.ts';

test('the next run time is the timer\'s; during a run it is one interval ahead, never in the past; null once stopped', async () => {
  let release!: () => void;
  let runs = 0;
  const task = new PeriodicTask(
    'poll',
    () => 3_600_000,
    () => {
      runs++;
      return new Promise<void>((resolve) => (release = resolve));
    },
    new MemoryLogger(),
  );
  assert.equal(task.nextRunAt, null, 'not started');
  const before = Date.now();
  task.start(50_000);
  assert.ok(Math.abs((task.nextRunAt ?? 0) - (before + 50_000)) < 1_000, 'the timer\'s time');

  const run = task.runNow();
  assert.equal(runs, 1);
  assert.ok((task.nextRunAt ?? 0) - Date.now() > 3_500_000, 'a run in progress: the next one an interval from now');
  release();
  await run;
  assert.ok((task.nextRunAt ?? 0) - Date.now() > 3_500_000, 'scheduled an interval after the run');
  task.stop();
  assert.equal(task.nextRunAt, null);
});
