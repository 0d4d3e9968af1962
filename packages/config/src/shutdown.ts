// The apps' shutdown bounds, in one place: the apps keep them, and `npm start` (scripts/stopping.ts) waits out the
// longest of them before it kills an app that has not stopped.

/** After SIGTERM/SIGINT, how long the ingress and the dashboard give in-flight requests before exiting anyway, ms. */
export const APP_SHUTDOWN_DEADLINE_MS = 10_000;

/**
 * A worker's closing after its jobs' grace (WORKER_SHUTDOWN_TIMEOUT_MS): WORKER_CLOSE_STEPS steps (queues, Redis,
 * PostgreSQL, the health server), each given at most WORKER_CLOSE_STEP_MS before it is logged and left, ms.
 */
export const WORKER_CLOSE_STEP_MS = 1_000;
export const WORKER_CLOSE_STEPS = 4;
