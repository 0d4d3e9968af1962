// The apps' shutdown bounds, in one place: the apps keep them, and `npm start` (scripts/stopping.ts) waits out the
// longest of them before it kills an app that has not stopped.

/** After SIGTERM/SIGINT, how long the ingress and the dashboard give in-flight requests before exiting anyway, ms. */
export const APP_SHUTDOWN_DEADLINE_MS = 10_000;

/**
 * The longest the ingress's closing takes once it begins, ms: every request received before it is answered within
 * the 4.5 s answer budget and a connection still open 0.5 s later is cut (apps/ingress src/app.ts), then draining the
 * enqueue batches, closing the queue and Redis's QUIT get 1 s each (app.ts, main.ts). apps/ingress/test/lame-duck.test.ts
 * checks the ingress's own bounds add up to no more.
 */
export const INGRESS_CLOSE_MAX_MS = 8_000;

/**
 * The longest INGRESS_SHUTDOWN_DRAIN_MS, ms: what APP_SHUTDOWN_DEADLINE_MS leaves after INGRESS_CLOSE_MAX_MS, so the
 * lame-duck delay never pushes the ingress's closing past its deadline (an exit 1 with answers still being written).
 */
export const INGRESS_SHUTDOWN_DRAIN_MAX_MS = APP_SHUTDOWN_DEADLINE_MS - INGRESS_CLOSE_MAX_MS;

/**
 * A worker's closing after its jobs' grace (WORKER_SHUTDOWN_TIMEOUT_MS): WORKER_CLOSE_STEPS steps (queues, Redis,
 * PostgreSQL, the health server), each given at most WORKER_CLOSE_STEP_MS before it is logged and left, ms.
 */
export const WORKER_CLOSE_STEP_MS = 1_000;
export const WORKER_CLOSE_STEPS = 4;
