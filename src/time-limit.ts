/**
 * "Wait at most N ms": the one way the node bounds a wait on work it does not own (a poll, a probe,
 * transfers draining). A leaf module: every layer may use it.
 */

/**
 * Resolves as `work` does, or with `onTimeout` once `ms` passes, whichever is first; rejects if
 * `work` rejects first. `ref: false`: the timer alone does not keep the process alive.
 */
export async function within<T, U>(work: Promise<T>, ms: number, onTimeout: U, options: { ref?: boolean } = {}): Promise<T | U> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<U>((resolve) => {
    timer = setTimeout(() => resolve(onTimeout), ms);
    if (options.ref === false) timer.unref();
  });
  try {
    return await Promise.race([work, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** Resolves when `work` settles (true) or `ms` passes (false), whichever is first; never rejects. */
export function settledWithin(work: Promise<unknown>, ms: number): Promise<boolean> {
  return within(
    work.then(
      () => true,
      () => true,
    ),
    ms,
    false,
  );
}
