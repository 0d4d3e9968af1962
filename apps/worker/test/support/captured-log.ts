import { type Logger, pino } from "pino";

/** A pino logger at info whose JSON lines the test reads back. */
export function capturedLog(): { logger: Logger; lines: string[] } {
  const lines: string[] = [];
  const logger = pino({ level: "info" }, { write: (line: string) => void lines.push(line) });
  return { logger, lines };
}
