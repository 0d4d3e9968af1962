import { numberFlag, stringFlag, type Values } from "../args.ts";
import { retryDelays } from "../deliver.ts";
import { UsageError } from "../io.ts";
import type { Api } from "../notifications.ts";

/**
 * `load`'s resend schedule: the waits, in milliseconds, before the 1st, 2nd, … resend of a delivery that was not
 * acknowledged. WeChat Pay resends an unacknowledged notification on a fixed schedule (APIv3 15s/15s/30s/3m/10m/20m/
 * 30m/30m/30m/60m/3h/3h/3h/6h/6h, 24 h 4 min in all; APIv2 15/15/30/180/1800/1800/1800/1800/3600 s: deliver.ts);
 * `--resend` follows it scaled by `--time-scale`, `--resend-schedule` gives compressed waits directly.
 */

/** At most this many resends per delivery (WeChat makes 15). */
export const MAX_RESENDS = 30;
/** Longest wait of a `--resend-schedule` step, ms: WeChat's longest (6 h). */
export const MAX_RESEND_WAIT_MS = 6 * 3600 * 1000;

const UNIT_MS = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 } as const;
const STEP = /^(\d+(?:\.\d+)?)(ms|s|m|h)$/;

/** `1s,2s,500ms,1.5m` → [1000, 2000, 500, 90000]; every step a positive number with a unit, at most MAX_RESENDS. */
export function parseResendSchedule(text: string): number[] {
  const flag = "--resend-schedule";
  const steps = text.split(",").map((s) => s.trim());
  if (steps.length > MAX_RESENDS) {
    throw new UsageError(`${flag} has ${steps.length} steps, at most ${MAX_RESENDS}`, flag);
  }
  return steps.map((step) => {
    const m = STEP.exec(step);
    if (m === null) {
      throw new UsageError(
        `${flag} must be comma-separated waits with a unit (ms, s, m, h), e.g. 1s,2s,5s,10s; got "${step}" in "${text}"`,
        flag,
      );
    }
    const ms = Math.round(Number(m[1]) * UNIT_MS[m[2] as keyof typeof UNIT_MS]);
    if (ms < 1 || ms > MAX_RESEND_WAIT_MS) {
      throw new UsageError(`${flag}: every wait must be between 1ms and 6h, got "${step}"`, flag);
    }
    return ms;
  });
}

/**
 * The resend schedule of the command line, ms, or null when `load` does not resend (neither `--resend` nor
 * `--resend-schedule`). `--time-scale` scales WeChat's schedule only: an explicit schedule is already what the user
 * wants, so the two together are refused rather than one silently ignored.
 */
export function resendScheduleMs(values: Values, api: Api): number[] | null {
  const explicit = stringFlag(values, "resend-schedule");
  const timeScale = numberFlag(values, "time-scale", { min: 0, max: 1000, minExclusive: true, what: "a factor" });
  if (explicit !== undefined) {
    if (timeScale !== undefined) {
      throw new UsageError(
        "--time-scale scales WeChat's schedule (--resend); with --resend-schedule give the waits themselves",
        "--time-scale",
      );
    }
    return parseResendSchedule(explicit);
  }
  if (values.resend !== true) {
    if (timeScale !== undefined)
      throw new UsageError("--time-scale scales the resend schedule: add --resend", "--time-scale");
    return null;
  }
  return retryDelays(api).map((seconds) => Math.max(1, Math.round(seconds * 1000 * (timeScale ?? 1))));
}

/** [1000, 2000, 500] → "1s, 2s, 500ms" */
export function formatSchedule(scheduleMs: readonly number[]): string {
  return scheduleMs
    .map((ms) => {
      if (ms % UNIT_MS.h === 0) return `${ms / UNIT_MS.h}h`;
      if (ms % UNIT_MS.m === 0) return `${ms / UNIT_MS.m}m`;
      if (ms % UNIT_MS.s === 0) return `${ms / UNIT_MS.s}s`;
      return `${ms}ms`;
    })
    .join(", ");
}
