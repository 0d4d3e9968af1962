/**
 * Polls `done` every `intervalMs` until it returns true; resolves false once `timeoutMs` has passed without it.
 * The caller asserts on the result, so a slow host only costs time, and a condition that never holds fails.
 */
export async function pollUntil(
  done: () => boolean | Promise<boolean>,
  timeoutMs: number,
  intervalMs = 20,
): Promise<boolean> {
  const deadline = performance.now() + timeoutMs;
  while (!(await done())) {
    if (performance.now() > deadline) return false;
    await new Promise((r) => setTimeout(r, intervalMs));
  }
  return true;
}
