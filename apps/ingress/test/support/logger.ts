import { pino } from "pino";

/** Tests assert on answers, metrics and Redis, not on log lines. */
export const silentLogger = pino({ level: "silent" });
