/**
 * Sorting database failures into "retry" and "stop" for the worker. The default is retry: an error we do not
 * recognise is more likely an outage than a bug in the data, and retries are bounded by the queue's
 * attempts. Only errors in the data itself (SQLSTATE class 22 data exception, class 23 integrity violation)
 * are permanent: running the same statement on the same data fails the same way — except a unique violation on an
 * index the apply statements check before they write (RACED_UNIQUE_INDEXES).
 */
export interface DbErrorClass {
  transient: boolean;
  /** Stable code for logs, metrics and dead letters. */
  code:
    | "DB_UNAVAILABLE"
    | "DB_CONFLICT"
    | "DB_LOCK_TIMEOUT"
    | "DB_STATEMENT_TIMEOUT"
    | "DB_CONSTRAINT"
    | "DB_DATA"
    | "DB_ERROR";
  /** PostgreSQL SQLSTATE when the server answered. */
  sqlstate?: string;
}

const UNAVAILABLE_KINDS = new Set([
  "DatabaseNotReachable",
  "ConnectionClosed",
  "SocketTimeout",
  "TooManyConnections",
  "TlsConnectionError",
]);
const UNAVAILABLE_ERRNO = new Set(["ECONNREFUSED", "ECONNRESET", "ETIMEDOUT", "EPIPE", "ENOTFOUND", "EAI_AGAIN"]);
/** Prisma's own codes: P1001 can't reach, P1002 timed out, P1017 closed, P2024 pool timeout, P2028 tx API. */
const PRISMA_UNAVAILABLE = new Set(["P1001", "P1002", "P1017", "P2024", "P2028"]);
/**
 * Unique indexes whose conflicts the apply statements decide before writing (TRANSACTION_CONFLICT: the payment's
 * transaction id is another order's — its payment, Order_transactionId_key, or either that or a second charge of it,
 * PaymentTransaction_pkey; REFUND_ID_CONFLICT: the refund id is another refund's), on what their snapshot
 * shows. A violation of one of them therefore means a concurrent transaction wrote the same id after that snapshot
 * and committed while this statement waited on the index: the next run sees the row and records the conflict for
 * review, so this is a retry (DB_CONFLICT), not a dead letter.
 */
const RACED_UNIQUE_INDEXES = new Set(["Order_transactionId_key", "PaymentTransaction_pkey", "Refund_refundId_key"]);

export function classifyDbError(error: unknown): DbErrorClass {
  const facts = collect(error);
  const sqlstate = facts.sqlstate;
  if (sqlstate === "40001" || sqlstate === "40P01" || facts.kinds.has("TransactionWriteConflict")) {
    return { transient: true, code: "DB_CONFLICT", sqlstate: sqlstate ?? "40001" };
  }
  if (
    sqlstate?.startsWith("08") ||
    sqlstate === "53300" ||
    sqlstate === "57P01" ||
    sqlstate === "57P02" ||
    sqlstate === "57P03"
  ) {
    return { transient: true, code: "DB_UNAVAILABLE", sqlstate };
  }
  // Waits the server gave up on (lock_timeout, statement_timeout, or a cancel request), the data being fine: retried,
  // under codes of their own so that operators can tell lock contention and slow statements from other failures.
  if (sqlstate === "55P03") return { transient: true, code: "DB_LOCK_TIMEOUT", sqlstate };
  if (sqlstate === "57014") return { transient: true, code: "DB_STATEMENT_TIMEOUT", sqlstate };
  if (
    [...facts.kinds].some((k) => UNAVAILABLE_KINDS.has(k)) ||
    [...facts.codes].some((c) => UNAVAILABLE_ERRNO.has(c) || PRISMA_UNAVAILABLE.has(c))
  ) {
    return { transient: true, code: "DB_UNAVAILABLE", ...(sqlstate ? { sqlstate } : {}) };
  }
  // node-postgres pool and client errors carry no code, only these messages.
  if (
    /timeout exceeded when trying to connect|Connection terminated|Client has encountered a connection error|Cannot use a pool after calling end|Query read timeout/i.test(
      facts.messages,
    )
  ) {
    return { transient: true, code: "DB_UNAVAILABLE" };
  }
  if (sqlstate === "23505" && [...facts.constraints].some((c) => RACED_UNIQUE_INDEXES.has(c))) {
    return { transient: true, code: "DB_CONFLICT", sqlstate };
  }
  if (sqlstate?.startsWith("23")) return { transient: false, code: "DB_CONSTRAINT", sqlstate };
  if (sqlstate?.startsWith("22")) return { transient: false, code: "DB_DATA", sqlstate };
  return { transient: true, code: "DB_ERROR", ...(sqlstate ? { sqlstate } : {}) };
}

interface Facts {
  sqlstate?: string;
  kinds: Set<string>;
  codes: Set<string>;
  /** Names of the violated constraints (unique: the index). */
  constraints: Set<string>;
  messages: string;
}

/**
 * Walks the error and what it wraps: Prisma puts the driver adapter's error in `meta.driverAdapterError`,
 * whose `cause` holds `{ kind, code | originalCode, constraint: { index } }`; raw pg errors have `code` = SQLSTATE
 * and `constraint` (the name) directly.
 */
function collect(error: unknown): Facts {
  const facts: Facts = { kinds: new Set(), codes: new Set(), constraints: new Set(), messages: "" };
  const seen = new Set<unknown>();
  const visit = (value: unknown, depth: number): void => {
    if (typeof value !== "object" || value === null || seen.has(value) || depth > 6) return;
    seen.add(value);
    const v = value as Record<string, unknown>;
    if (typeof v.message === "string") facts.messages += `${v.message}\n`;
    if (typeof v.kind === "string") facts.kinds.add(v.kind);
    const constraint = v.constraint;
    const name =
      typeof constraint === "object" && constraint !== null ? (constraint as { index?: unknown }).index : constraint;
    if (typeof name === "string") facts.constraints.add(name);
    for (const key of ["originalCode", "code"] as const) {
      const code = v[key];
      if (typeof code !== "string") continue;
      // SQLSTATEs are 5 characters with at least one digit (errno names like EPIPE have none); P#### is Prisma's.
      if (/^(?=.*\d)[0-9A-Z]{5}$/.test(code) && !/^P\d{4}$/.test(code)) facts.sqlstate ??= code;
      facts.codes.add(code);
    }
    visit(v.cause, depth + 1);
    visit(v.meta, depth + 1);
    visit(v.driverAdapterError, depth + 1);
  };
  visit(error, 0);
  return facts;
}
