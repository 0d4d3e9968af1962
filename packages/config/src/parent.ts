// The IPC channel between scripts/start.ts (`npm start`) and each app it runs: the app notices through it that start.ts
// is gone, and tells start.ts which signal began its shutdown. start.ts sends nothing on it; Docker, systemd and a
// shell give an app none, so for them this does nothing.
import { z } from "zod";

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

/** The one message an app sends on the channel: the signal its shutdown began on. */
const stopReport = z.object({ stopping: z.enum(["SIGINT", "SIGTERM"]) });

/**
 * Tells `npm start` that this app stops because it was sent `signal`, first thing in its handler. Ctrl-C signals every
 * process of the terminal's group: an app may finish stopping before start.ts has taken its own SIGINT, and its exit
 * status 0 alone cannot tell that stop from an app ending on its own. Sent before the shutdown begins, the report
 * reaches start.ts before the channel closes at the app's exit.
 */
export function reportStopSignal(signal: "SIGINT" | "SIGTERM", log: ParentWatchLogger): void {
  // Not connected: no channel (not run by npm start), or start.ts is gone (stopWhenParentExits' SIGTERM).
  if (process.send === undefined || !process.connected) return;
  // The callback takes a failure that would otherwise be an 'error' event without a listener: start.ts gone meanwhile.
  process.send({ stopping: signal } satisfies z.infer<typeof stopReport>, (error: Error | null) => {
    if (error !== null) log.warn({ err: error.message }, "could not tell npm start which signal this app stops on");
  });
}

/** The signal an app reported with reportStopSignal, or undefined for any other message. */
export function reportedStopSignal(message: unknown): "SIGINT" | "SIGTERM" | undefined {
  const parsed = stopReport.safeParse(message);
  return parsed.success ? parsed.data.stopping : undefined;
}
