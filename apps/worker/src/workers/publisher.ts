import { type PrismaClient, storeOverflowEvent } from "@wpn/db";
import { type CeilingAdder, type PublishEvent, publishJobName } from "@wpn/queue";
import type { Logger } from "pino";
import { oneLine, WorkerError } from "../errors.ts";
import { LogThrottle } from "../log-throttle.ts";
import type { WorkerMetrics } from "../metrics.ts";

export interface PublisherDeps {
  /** Adds to notify.publish while fewer than `maxWaiting` jobs wait there (one Redis script: count and add). */
  adder: CeilingAdder;
  /** PUBLISH_MAX_WAITING. */
  maxWaiting: number;
  prisma: PrismaClient;
  log: Logger;
  metrics: WorkerMetrics;
}

/**
 * The apply stage's `publish` (PUBLISH_EVENTS=true): adds the event of a committed effect to notify.publish under its
 * notification id, or — when PUBLISH_MAX_WAITING jobs already wait there, or events it turned away are not all back
 * yet (createCeilingAdder: new events queue behind them) — stores it in PublishOverflow (PUBLISH_DIVERTED), whence
 * the relay adds it once there is room (publish-relay.ts).
 *
 * After the effect's commit, as the add was: the payment statement is shared by a batch of jobs, and whether there is
 * room is Redis's answer at that moment. No event is lost in between: a failed add (QUEUE_UNAVAILABLE, retried) or
 * store (a DB_* code, retried) fails the attempt, and the re-run answers ALREADY and derives the same event again
 * (domain/publish-events.ts). Nor is one published under two ids: the row's `eventId` and the relay's job id are the
 * notification id, so a re-run that stores it again stores nothing, and one that finds room adds the job the relay
 * would add (a copy still kept is dropped by BullMQ).
 */
export function eventPublisher(deps: PublisherDeps): (event: PublishEvent) => Promise<void> {
  const divertedLines = new LogThrottle(DIVERTED_LOG_INTERVAL_MS);
  return async (event) => {
    let answer: { placed: number; added: number };
    try {
      answer = await deps.adder.add(
        [{ name: publishJobName(event.type), id: event.notificationId, data: event }],
        deps.maxWaiting,
        Date.now(),
        "new",
      );
    } catch (error) {
      throw WorkerError.of("QUEUE_UNAVAILABLE", `enqueue of an event to notify.publish failed: ${oneLine(error)}`, {
        cause: error,
      });
    }
    if (answer.placed === 1) {
      // A re-run's copy (ALREADY, a replay) while the first event is still kept is not added: not counted.
      if (answer.added > 0) deps.metrics.published.inc({ type: event.type });
      return;
    }
    const stored = await storeOverflowEvent(deps.prisma, event.notificationId, event);
    // The flag the script set when it turned the event away may have been cleared since, by a relay's pass that read
    // the table before this row was in it: set it again, or new events finding room would be added ahead of this one
    // until the next pass (a second). Also for a row already there (a re-run): it waits all the same.
    try {
      await deps.adder.storedWaiting();
    } catch (error) {
      throw WorkerError.of(
        "QUEUE_UNAVAILABLE",
        `the event stored in PublishOverflow was not flagged: ${oneLine(error)}`,
        {
          cause: error,
        },
      );
    }
    // A re-run's copy of an event already stored is not stored again: not counted.
    if (stored) deps.metrics.publishDiverted.inc({ type: event.type });
    const suppressed = divertedLines.take();
    if (suppressed === undefined) return;
    deps.log.warn(
      { code: "PUBLISH_DIVERTED", notificationId: event.notificationId, type: event.type, stored, suppressed },
      `notify.publish holds ${deps.maxWaiting} waiting or delayed events (PUBLISH_MAX_WAITING), or stored events wait for room before it: event kept in PublishOverflow`,
    );
  };
}

/**
 * Least time between two PUBLISH_DIVERTED lines of one process, ms. Once the queue is full every event is diverted —
 * 2,000 a second on a sale day, one warning each — so a line names one event and `suppressed`, how many were diverted
 * since the previous line without one; wpn_worker_publish_diverted_total counts each.
 */
const DIVERTED_LOG_INTERVAL_MS = 10_000;
