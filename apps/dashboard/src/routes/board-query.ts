import { decodesAsUriComponent } from "@wpn/config";
import { hasControlCharacter } from "../input.ts";

/** The job sets bull-board's list can show (its STATUSES): `latest` is the newest of each, the others BullMQ's sets. */
const LIST_STATUSES = new Set([
  "latest",
  "active",
  "waiting",
  "waiting-children",
  "prioritized",
  "completed",
  "failed",
  "delayed",
  "paused",
]);

/**
 * Bounds of the list's paging. A page is a Redis list range from (page - 1) × jobsPerPage, which must stay an
 * integer Redis takes (1e20 failed LRANGE as a 500); no queue holds 10^9 jobs. 300 jobs a page is bull-board's own
 * limit (its MAX_JOBS_PER_PAGE, 9.10): above it bull-board answers a 400 of its own shape (`error` an object, not a code).
 */
const MAX_PAGE = 1_000_000;
const MAX_JOBS_PER_PAGE = 300;

/**
 * Why the query of bull-board's job list (`GET <board>/api/queues`) is refused, or undefined when bull-board may have
 * it. Its client sends `activeQueue`, `status`, `page` and `jobsPerPage`; bull-board takes them unchecked —
 * `decodeURIComponent(activeQueue)` (a lone `%` threw: 500), `status` as a BullMQ job set (NUL reached Redis: 500),
 * `page`/`jobsPerPage` as numbers by JavaScript's coercion (`0x10`, `1e20`). Each is at most one value.
 */
export function boardListQueryProblem(query: Record<string, unknown>): string | undefined {
  for (const [name, value] of Object.entries(query)) {
    if (typeof value !== "string") return `${name} is given more than once`;
    if (hasControlCharacter(value)) return `${name} contains a control character`;
  }
  const { activeQueue, status, page, jobsPerPage } = query as Record<string, string | undefined>;
  if (activeQueue !== undefined && !decodesAsUriComponent(activeQueue))
    return "activeQueue is not a valid URI component";
  if (activeQueue !== undefined && hasControlCharacter(decodeURIComponent(activeQueue)))
    return "activeQueue contains a control character";
  if (status !== undefined && !LIST_STATUSES.has(status))
    return `status must be one of ${[...LIST_STATUSES].join(", ")}`;
  if (page !== undefined && !inRange(page, MAX_PAGE)) return `page must be a whole number from 1 to ${MAX_PAGE}`;
  if (jobsPerPage !== undefined && !inRange(jobsPerPage, MAX_JOBS_PER_PAGE))
    return `jobsPerPage must be a whole number from 1 to ${MAX_JOBS_PER_PAGE}`;
  return undefined;
}

/** A decimal integer from 1 to `max`, digits only (no sign, exponent, hex or spaces). */
function inRange(value: string, max: number): boolean {
  return /^[1-9]\d{0,9}$/.test(value) && Number(value) <= max;
}
