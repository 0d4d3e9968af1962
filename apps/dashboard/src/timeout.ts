/**
 * `promise`'s outcome, or a rejection naming `what` once `ms` pass first; the timer is cleared either way. Work
 * still running after that goes on unobserved: its value is dropped and its rejection is handled by the race.
 */
export function withTimeout<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} did not answer within ${ms} ms`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}
