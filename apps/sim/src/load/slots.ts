/**
 * At most `size` deliveries in flight: first deliveries and resends take a slot for the time of their HTTP request
 * only (a delivery waiting for its next resend holds none), so the agent never queues a request behind busy sockets
 * (its answer timer would run while it waits for a socket). Waiters are served first come, first served.
 */
export class Slots {
  #free: number;
  readonly #waiters: (() => void)[] = [];

  constructor(size: number) {
    this.#free = size;
  }

  /** Resolves true once a slot is taken, false when `signal` aborts first (no slot taken). */
  acquire(signal: AbortSignal): Promise<boolean> {
    if (signal.aborted) return Promise.resolve(false);
    if (this.#free > 0) {
      this.#free -= 1;
      return Promise.resolve(true);
    }
    return new Promise<boolean>((resolve) => {
      const grant = () => {
        signal.removeEventListener("abort", onAbort);
        resolve(true);
      };
      const onAbort = () => {
        const at = this.#waiters.indexOf(grant);
        if (at !== -1) this.#waiters.splice(at, 1);
        resolve(false);
      };
      this.#waiters.push(grant);
      signal.addEventListener("abort", onAbort, { once: true });
    });
  }

  release(): void {
    const next = this.#waiters.shift();
    if (next === undefined) this.#free += 1;
    else next();
  }
}
