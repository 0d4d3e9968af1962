/**
 * BullMQ's exponential backoff with jitter (`delay · 2^(attempt-1)`, drawn from the top `jitter` fraction
 * of that value), optionally capped so the next attempt is not scheduled after `deadline`. Used by the apply
 * worker as the strategy of `APPLY_BACKOFF_TYPE`. All values in ms.
 */
export function applyBackoffDelay(args: {
  /** 1 for the first retry. */
  attemptsMade: number;
  delay: number;
  jitter?: number;
  /** ms since the epoch; the retry is scheduled no later than this (but at least `minDelay` from now). */
  deadline?: number;
  now?: number;
  minDelay?: number;
  random?: () => number;
}): number {
  const jitter = args.jitter ?? 0;
  const max = Math.round(2 ** Math.max(0, args.attemptsMade - 1) * args.delay);
  const drawn = jitter > 0 ? Math.floor((args.random ?? Math.random)() * max * jitter + max * (1 - jitter)) : max;
  if (args.deadline === undefined) return drawn;
  const untilDeadline = args.deadline - (args.now ?? Date.now());
  return Math.max(args.minDelay ?? 100, Math.min(drawn, untilDeadline));
}
