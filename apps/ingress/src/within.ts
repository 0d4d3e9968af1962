/** What `within` answers when the time ran out first. */
export const TIMED_OUT: unique symbol = Symbol("timed out");

/**
 * `work`'s value, or TIMED_OUT when `ms` pass first; its timer is cleared either way. Work still running after that
 * goes on unobserved, its rejection handled by the race (a failure that matters is the caller's to log).
 */
export async function within<T>(work: Promise<T>, ms: number): Promise<T | typeof TIMED_OUT> {
  let timer: NodeJS.Timeout | undefined;
  const elapsed = new Promise<typeof TIMED_OUT>((resolve) => {
    timer = setTimeout(() => resolve(TIMED_OUT), ms);
  });
  try {
    return await Promise.race([work, elapsed]);
  } finally {
    clearTimeout(timer);
  }
}
