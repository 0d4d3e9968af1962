// How an app started by `npm start` notices that scripts/start.ts is gone. start.ts runs each app with an IPC channel
// for this alone (it sends nothing on it); Docker, systemd and a shell give an app none, so for them this does nothing.

/** The logger method used (a pino logger has it). */
export interface ParentWatchLogger {
  warn(fields: object, message: string): void;
}

/**
 * When this process has an IPC channel, stops it as SIGTERM does once the channel closes: its parent died without
 * stopping it (kill -9, the OOM killer). Without this, npm start's children ran on under init holding their ports,
 * and the next `npm start` failed with EADDRINUSE. The signal goes to the process itself so that the app's own
 * SIGTERM handler runs, the same graceful shutdown as on Ctrl-C. Call it first thing: the channel may close at any
 * time, and before the handler is installed the signal ends the process at once, which has nothing to drain yet.
 */
export function stopWhenParentExits(log: ParentWatchLogger): void {
  const channel = process.channel;
  if (channel === undefined) return;
  process.once("disconnect", () => {
    log.warn({}, "the npm start process that ran this one is gone (its IPC channel closed); stopping as on SIGTERM");
    process.kill(process.pid, "SIGTERM");
  });
  // A 'disconnect' listener holds the channel referenced: it must not keep a process alive that would otherwise exit.
  channel.unref();
}
