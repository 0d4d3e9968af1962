import { isIP } from "node:net";
import { z } from "zod";
import { INGRESS_SHUTDOWN_DRAIN_MAX_MS } from "./shutdown.ts";
import { decodesAsUriComponent } from "./uri-component.ts";
import { PASSWORD_PLACEHOLDER, withoutQueryPasswords } from "./url-passwords.ts";

/** Local defaults: what `npm start` and the tests use on a fresh machine. */
/** The ingress's port when PORT is not set (the simulator posts there by default too). */
export const DEFAULT_PORT = 3000;
export const DEFAULT_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/wechatpay_notify";
export const DEFAULT_REDIS_URL = "redis://127.0.0.1:6379";

/**
 * A WeChat Pay merchant number (mchid), as this project accepts one: 6–32 ASCII digits. WeChat's are 10 digits today;
 * the rest is room. The one rule for WECHATPAY_MCHID and for the mchid of a `Merchant` row, which the ingress serves
 * only when it fits (apps/ingress src/merchants/registry.ts): the mchid is part of every notification id (Redis keys,
 * BullMQ job ids), whose length the workers bound (NOTIFICATION_ID_MAX_LENGTH of @wpn/queue). No `g` flag: `test`
 * keeps no state between calls.
 */
export const MCHID_PATTERN = /^\d{6,32}$/;

/**
 * The schema names DATABASE_URL's `?schema=` may give: plain identifiers, the rule of packages/db's parseDatabaseUrl
 * (which puts the name into SQL text). Repeated there rather than imported: @wpn/db's entry loads the generated
 * Prisma client, which config must not need; packages/db/test/database-url.test.ts checks the two agree.
 */
const SCHEMA_NAME = /^[A-Za-z_][A-Za-z0-9_]{0,62}$/;

/**
 * Whitespace or a control character anywhere in a URL. WHATWG URL drops them around a URL (and tabs and line breaks
 * within), so the checks below passed " postgresql://…" and "…/db ", while pg took the first for a database of that
 * name on host "base" and the second for database "db ", and ioredis threw TypeError from `new Redis` for " redis://…".
 * A URL never needs one: a space in a password is %20. (A value that is no URL at all gets the message that says so.)
 */
const SPACE_OR_CONTROL = /[\s\p{Cc}]/u;
const SPACED_URL_MESSAGE = "must not contain spaces, tabs or line breaks (write a space in a password as %20)";

/**
 * A service URL that pg or ioredis can use: one of `schemes` and a host — in the authority or, with
 * `socketHostParam` (pg over a Unix socket: `postgresql:///db?host=/var/run/postgresql`), in `?host=`. A bare URL
 * check let `localhost:5432/db` (scheme `localhost:`), `mysql://…` and `http://…` through, to fail later with a
 * driver's stack trace.
 */
function serviceUrl(schemes: readonly [string, string], example: string, socketHostParam: boolean) {
  const [scheme, alias] = schemes;
  const message = `must be a ${scheme}// (or ${alias}//) URL with a host, e.g. ${example}`;
  return z.string().superRefine((value, ctx) => {
    if (URL.canParse(value) && SPACE_OR_CONTROL.test(value)) {
      ctx.addIssue({ code: "custom", message: SPACED_URL_MESSAGE });
      return;
    }
    const parsed = URL.canParse(value) ? new URL(value) : undefined;
    const host = parsed?.hostname || (socketHostParam ? parsed?.searchParams.get("host") : "");
    if (parsed !== undefined && schemes.includes(parsed.protocol) && host) return;
    const socketForm = socketHostParam ? withSocketUser(value) : undefined;
    const hint = socketForm === undefined ? "" : `; for a Unix socket, the user goes into the query: ${socketForm}`;
    ctx.addIssue({ code: "custom", message: `${message}${hint}` });
  });
}

/**
 * libpq's socket form `postgresql://user[:password]@/db?host=/dir` as the URL pg and this project parse: WHATWG URL
 * has no user without a host, so `user@/` is no URL at all, while `postgresql:///db?host=/dir&user=user` is the same
 * connection. The password, in the user part or the query, is left as a placeholder: the message is printed and logged.
 * Undefined for anything else.
 */
function withSocketUser(value: string): string | undefined {
  const libpq = /^(postgres(?:ql)?):\/\/([^@/:?]+)(:[^@/?]*)?@\/([^?#]*)(?:\?([^#]*))?$/.exec(value);
  if (libpq === null) return undefined;
  const [, scheme, user, password, database, query] = libpq;
  const params = [
    query === undefined ? undefined : withoutQueryPasswords(query),
    `user=${user}`,
    password === undefined ? undefined : `password=${PASSWORD_PLACEHOLDER}`,
  ];
  return `${scheme}:///${database}?${params.filter((p) => p !== undefined && p !== "").join("&")}`;
}

/**
 * DATABASE_URL names its database: without a path pg connects to the database named after the user, while the
 * migrator (parseDatabaseUrl) would create and migrate `postgres` — the two would never meet.
 */
function checkDatabaseName(value: string, ctx: z.RefinementCtx): void {
  if (!URL.canParse(value) || new URL(value).pathname.replace(/^\//, "") !== "") return;
  ctx.addIssue({
    code: "custom",
    message: "must name its database, e.g. postgresql://postgres@127.0.0.1:5432/wechatpay_notify",
  });
}

/**
 * DATABASE_URL's database and user names decode: parseDatabaseUrl (db:migrate, db:prune) and the scripts' messages
 * read them with decodeURIComponent, which throws URIError — a stack trace and exit 1 — for a `%` not followed by two
 * hex digits. (pg itself reads such a `%` as written; the password, which nothing here decodes, may keep one.) The
 * message repeats no part of the URL: its password is in it.
 */
function checkDatabaseUrlEscapes(value: string, ctx: z.RefinementCtx): void {
  if (!URL.canParse(value)) return;
  const { username, pathname } = new URL(value);
  if (decodesAsUriComponent(username) && decodesAsUriComponent(pathname)) return;
  ctx.addIssue({
    code: "custom",
    message:
      "has a % in its database or user name that does not begin an escape (%XX): write % as %25 (the value is not repeated)",
  });
}

/** DATABASE_URL's Prisma-style `?schema=`, when there is one, must be a name parseDatabaseUrl accepts. */
function checkSchemaParam(value: string, ctx: z.RefinementCtx): void {
  const schema = URL.canParse(value) ? new URL(value).searchParams.get("schema") : null;
  if (schema === null || SCHEMA_NAME.test(schema)) return;
  ctx.addIssue({
    code: "custom",
    message: `?schema= must be a plain identifier (letters, digits and _, not starting with a digit, at most 63), not "${schema}"`,
  });
}

/**
 * Prisma's own connection-URL parameters for its pool, which the pg driver (adapter) this project uses ignores, with
 * the settings that do their job: a Prisma user's `?connection_limit=5` left the pools at PG_POOL_MAX all the same.
 */
const PRISMA_POOL_PARAMS: Readonly<Record<string, string>> = {
  connection_limit: "PG_POOL_MAX (the workers) and DASHBOARD_PG_POOL_MAX",
  pool_timeout: "PG_CONNECT_TIMEOUT_MS",
};

function checkPrismaPoolParams(value: string, ctx: z.RefinementCtx): void {
  if (!URL.canParse(value)) return;
  const params = new URL(value).searchParams;
  const found = Object.keys(PRISMA_POOL_PARAMS).find((name) => params.has(name));
  if (found === undefined) return;
  ctx.addIssue({
    code: "custom",
    message: `must not carry ?${found}=, Prisma's own parameter, which this project's pg driver ignores: set ${PRISMA_POOL_PARAMS[found]} instead`,
  });
}

/**
 * REDIS_URL as ioredis reads it (its parseURL): the user name and password go through decodeURIComponent, which throws
 * URIError from `new Redis` — a stack trace at start — for a `%` not followed by two hex digits (a generated password
 * holding one); and the path is the database index, SELECTed as written, so `/x` failed at the first SELECT and `/1.5`
 * was sent as is. The messages repeat no part of the URL: its password is in it.
 */
function checkRedisUrl(value: string, ctx: z.RefinementCtx): void {
  if (!URL.canParse(value)) return;
  const { username, password, pathname } = new URL(value);
  if (!decodesAsUriComponent(username) || !decodesAsUriComponent(password)) {
    ctx.addIssue({
      code: "custom",
      message:
        "has a % in its user name or password that does not begin an escape (%XX): write % as %25 (the value is not repeated)",
    });
  }
  if (!/^\/?(\d+)?$/.test(pathname)) {
    ctx.addIssue({ code: "custom", message: "must have the database number as its path (/0, /1, …), or no path" });
  }
  checkRedisQuery(new URL(value).searchParams, pathname, ctx);
}

/**
 * The query parameters of REDIS_URL that ioredis applies as written: `db` (the database, as the path gives it) and
 * `family` (4 or 6: the address family the host name resolves to). ioredis copies every query parameter into the
 * connection's options, as a string, beneath the options the apps set: `?tls=true` turned TLS on for a redis:// URL,
 * `?family=IPv6` and `?db=x` failed only at connect (`SELECT NaN`), `?db=` beside a path database lost to the path,
 * and any other name (a typo, an option the apps set themselves) was silently ignored.
 */
const REDIS_QUERY_VALUES: Readonly<Record<string, RegExp>> = { db: /^\d+$/, family: /^[46]$/ };

function checkRedisQuery(query: URLSearchParams, pathname: string, ctx: z.RefinementCtx): void {
  const names = [...query.keys()];
  const taken = names.every(
    (name) =>
      Object.hasOwn(REDIS_QUERY_VALUES, name) &&
      query.getAll(name).length === 1 &&
      REDIS_QUERY_VALUES[name]?.test(query.get(name) ?? "") === true,
  );
  if (!taken) {
    ctx.addIssue({
      code: "custom",
      message:
        "takes no query parameter but db=<number> and family=4 or 6, each once (ioredis reads any other as a connection option or ignores it; the value is not repeated)",
    });
    return;
  }
  if (query.has("db") && /\d/.test(pathname)) {
    ctx.addIssue({ code: "custom", message: "gives its database twice, as its path and as ?db=: keep one" });
  }
}

/**
 * DASHBOARD_TRUST_PROXY: `false`; `true` (any peer is taken for the proxy: the port must be reachable only through
 * it); or the reverse proxies' addresses, IPs and CIDR ranges separated by commas, as Fastify's trustProxy takes them
 * (only a peer among them is asked for X-Forwarded-*). A zone (`%eth0`) is refused: the address a peer connects from
 * has none.
 */
const trustProxy = z.string().transform((value, ctx): boolean | string[] => {
  if (value === "true" || value === "false") return value === "true";
  const entries = value
    .split(",")
    .map((e) => e.trim())
    .filter((e) => e !== "");
  if (entries.length > 0 && entries.every(isAddressOrRange)) {
    if (!entries.some(isWholeSpace)) return entries;
    ctx.addIssue({
      code: "custom",
      message:
        "must not hold a /0 range: it would take every peer for a proxy, and a client could pick its own address; " +
        "list the proxies' addresses (or true for one hop from any peer)",
    });
    return z.NEVER;
  }
  ctx.addIssue({
    code: "custom",
    message: "must be true, false or the reverse proxies' addresses (IP or CIDR, comma-separated)",
  });
  return z.NEVER;
});

/**
 * A /0 range (0.0.0.0/0, ::/0): Fastify's proxy-addr throws on one at start (a stack trace), and it would make every
 * peer a proxy — the client then whatever address it wrote leftmost in X-Forwarded-For.
 */
function isWholeSpace(entry: string): boolean {
  const prefix = entry.split("/")[1];
  return prefix !== undefined && Number(prefix) === 0;
}

/** An IPv4 or IPv6 address, optionally `/prefix` within the address's length. */
function isAddressOrRange(entry: string): boolean {
  const [address = "", prefix, ...rest] = entry.split("/");
  const version = isIP(address);
  if (version === 0 || address.includes("%") || rest.length > 0) return false;
  if (prefix === undefined) return true;
  return /^\d{1,3}$/.test(prefix) && Number(prefix) <= (version === 4 ? 32 : 128);
}

/**
 * WECHATPAY_API_BASE_URL: a URL with neither credentials nor a query or fragment, refused at start rather than masked
 * where it is used. Credentials can never work — fetch refuses a URL that has them, in a TypeError quoting the URL
 * whole, which the download's failure logged at every retry — and a proxy that wants them takes them otherwise. A query
 * or fragment would come before the appended /v3/certificates (the request went to the base URL's own path). So
 * nothing such a URL could carry secretly is ever accepted, and every message or log line naming the URL is safe. The
 * message does not repeat the value. The same rule guards the download itself (@wpn/wechatpay's certificatesUrl), for
 * callers that do not come through this config; one definition would make this package depend on that one.
 */
const apiBaseUrl = z.string().superRefine((value, ctx) => {
  const parsed = URL.canParse(value) ? new URL(value) : undefined;
  // fetch downloads over http(s) only, and the download appends its path to the text as written (certificatesUrl):
  // "https://host/ " asked for "/%20/v3/certificates" — WHATWG URL dropped the space only at the very end.
  if (parsed !== undefined && (!/^https?:$/.test(parsed.protocol) || SPACE_OR_CONTROL.test(value))) {
    ctx.addIssue({
      code: "custom",
      message: "must be an https:// (or http://) URL, without spaces, tabs or line breaks",
    });
    return;
  }
  const bare =
    parsed !== undefined &&
    parsed.username === "" &&
    parsed.password === "" &&
    !/[?#]/.test(value) &&
    parsed.host !== "";
  if (bare) return;
  ctx.addIssue({
    code: "custom",
    message:
      "must be WeChat Pay's API host (or a proxy's, with a path prefix if it needs one), without a user name, " +
      "password, query or fragment: put a proxy's credentials in the proxy, not in this URL",
  });
});

/**
 * Integer setting with bounds. Env values are strings; only plain decimal digits are read as a number, because
 * Number() (z.coerce) also reads " " as 0, "0x1F90" as 8080 and "1e3" as 1000 — a typo must fail at start-up, not
 * become another setting (a blank PORT a random port). "-1" is let through to fail as below the minimum.
 */
const int = (min: number, max: number) =>
  z
    .string()
    .regex(/^-?[0-9]+$/, "must be a whole number (decimal digits)")
    .transform(Number)
    .pipe(z.number().int().min(min).max(max));
/**
 * The ingress's and the dashboard's port. Not 0: the system would pick one at random — never where WeChat's notify_url
 * or a load balancer points, and not the port the apps log (they log the setting). WORKER_HEALTH_PORT keeps 0 (a free
 * port per worker, for processes started side by side).
 */
const fixedPort = int(0, 65_535).refine(
  (port) => port !== 0,
  "must be a port from 1 to 65535: 0 (a port picked at random) is never where WeChat's notify_url or a load balancer points",
);
const bool = z.enum(["true", "false"]).transform((v) => v === "true");

/**
 * Every environment variable the system reads, with its default. Names carry units (`_MS`, `_SECONDS`,
 * `_BYTES`). External tests drive the system through these names: renaming one is a breaking change.
 */
const envFields = z.object({
  LOG_LEVEL: z.enum(["fatal", "error", "warn", "info", "debug", "trace", "silent"]).default("info"),

  DATABASE_URL: serviceUrl(["postgresql:", "postgres:"], DEFAULT_DATABASE_URL, true)
    .superRefine(checkDatabaseName)
    .superRefine(checkDatabaseUrlEscapes)
    .superRefine(checkSchemaParam)
    .superRefine(checkPrismaPoolParams)
    .default(DEFAULT_DATABASE_URL),
  /**
   * pg pool size per worker process (and the replay CLI's; the dashboard has its own, DASHBOARD_PG_POOL_MAX). A worker
   * needs at least 4: its parse and apply stages each keep up to 2 batches in flight, each holding a connection for its
   * statement; refund statements and bookkeeping share the rest.
   */
  PG_POOL_MAX: int(1, 200).default(10),
  /** How long a query may wait for a pooled connection before failing (and the job retrying). */
  PG_CONNECT_TIMEOUT_MS: int(100, 60_000).default(5_000),
  /**
   * lock_timeout of each migration's statements (db:migrate, npm start). A statement waiting for a lock makes every
   * later statement on that table wait behind it — the workers' payments, while an ALTER TABLE waits for a long
   * report to end — so a migration waits at most this long per attempt, rolls back and tries again (5 attempts, 1 s
   * doubling between them), then fails MIGRATION_BLOCKED naming the blocking session. @wpn/db's MIGRATE_DEFAULTS has
   * the same default, for callers without settings (the tests).
   */
  MIGRATE_LOCK_TIMEOUT_MS: int(100, 60_000).default(2_000),
  /**
   * How long db:migrate and npm start wait for another process's migration run (the migration lock) before failing
   * MIGRATION_LOCK_WAIT_TIMEOUT; logged once as MIGRATION_LOCK_WAIT when the wait starts. As MIGRATE_DEFAULTS.
   */
  MIGRATE_WAIT_SECONDS: int(1, 24 * 3600).default(300),

  REDIS_URL: serviceUrl(["redis:", "rediss:"], DEFAULT_REDIS_URL, false)
    .superRefine(checkRedisUrl)
    .default(DEFAULT_REDIS_URL),
  /** Prefix of every BullMQ key; one Redis can host several deployments (and tests) side by side. */
  QUEUE_PREFIX: z
    .string()
    .regex(/^[A-Za-z0-9_.-]+$/, "must be letters, digits, '_', '.' or '-'")
    .default("wpn"),

  HOST: z.string().default("0.0.0.0"),
  PORT: fixedPort.default(DEFAULT_PORT),
  DASHBOARD_PORT: fixedPort.default(3001),
  /** Port of each worker process's health and metrics server (0 = any free port). */
  WORKER_HEALTH_PORT: int(0, 65_535).default(3002),

  WECHATPAY_MCHID: z.string().regex(MCHID_PATTERN, "must be the merchant number: 6 to 32 ASCII digits, nothing else"),
  /**
   * Shown on the dashboard's Keys page, never compared (a payment's appid is compared with its order's). ASCII letters,
   * digits, '_' and '-' (WeChat's are `wx` and 16 hex digits): a quoted `.env` value or a secret store keeps the
   * spaces and line breaks of a copy-paste, which were taken as written.
   */
  WECHATPAY_APPID: z
    .string()
    .regex(
      /^[A-Za-z0-9_-]{1,64}$/,
      "must be the appid as WeChat shows it: ASCII letters, digits, '_' or '-', at most 64",
    ),
  WECHATPAY_APIV3_KEY: z.string().refine((v) => Buffer.byteLength(v, "utf8") === 32, "must be 32 bytes"),
  /**
   * Optional: the APIv3 key before a rotation. WeChat encrypts with the new key from the moment it is set, but the
   * notifications already queued here were encrypted with the old one; the workers try this key when the current
   * one does not open a notification. Set both before switching in WeChat; remove it once no queued job and no dead
   * letter from before the rotation remains (a replayed letter is opened with the keys configured then).
   */
  WECHATPAY_APIV3_KEY_PREVIOUS: z
    .string()
    .refine((v) => Buffer.byteLength(v, "utf8") === 32, "must be 32 bytes")
    .optional(),
  /**
   * The WeChat Pay public key (`PUB_KEY_ID_…`) and its PEM file: both or neither. The ingress needs at least one
   * way to verify APIv3 notifications: this key, WECHATPAY_PLATFORM_CERT_PATHS, or certificate download (below).
   */
  /** Matched exactly against Wechatpay-Serial: the same rule as @wpn/wechatpay's KeyStore.addPublicKey. */
  WECHATPAY_PUBLIC_KEY_ID: z
    .string()
    .regex(
      /^PUB_KEY_ID_[0-9A-Za-z_-]{1,64}$/,
      "must be the WeChat Pay public key id, PUB_KEY_ID_ then ASCII letters, digits, '_' or '-' (no spaces)",
    )
    .optional(),
  WECHATPAY_PUBLIC_KEY_PATH: z.string().min(1, "must not be empty").optional(),
  /**
   * Platform-certificate download (both or neither): the serial of the merchant API certificate (商户API证书序列号) and
   * the file of its private key (apiclient_key.pem), which sign `GET /v3/certificates`. With them the ingress
   * downloads WeChat's platform certificates at start, every WECHATPAY_CERT_REFRESH_INTERVAL_SECONDS, and when a
   * notification names a serial it does not know (at most once a minute), so a certificate rotation needs nobody.
   */
  WECHATPAY_MERCHANT_SERIAL_NO: z
    .string()
    .regex(/^[0-9A-Fa-f]{1,64}$/, "must be the merchant API certificate's serial number (hex digits)")
    .optional(),
  WECHATPAY_MERCHANT_PRIVATE_KEY_PATH: z.string().min(1, "must not be empty").optional(),
  /**
   * WeChat Pay's API host for the certificate download (a test or proxy host may stand in, with a path prefix). No user
   * name, password, query or fragment: apiBaseUrl.
   */
  WECHATPAY_API_BASE_URL: apiBaseUrl.default("https://api.mch.weixin.qq.com"),
  /**
   * Period of the scheduled certificate download of every downloading merchant (the environment's and `Merchant`
   * rows'), seconds; each wait is shortened by up to a tenth at random so that a fleet spreads out, and a failed
   * download is retried after a minute, doubling up to this period. At most 12 h, as WeChat asks (间隔应小于12小时): it
   * lists a new certificate, and moves an old one's expire_time to retire it, 24 h ahead of a switch, so two periods
   * (and the retries of a failed one) fit in that day. The default, 1 h, is wechatpay-java's.
   */
  WECHATPAY_CERT_REFRESH_INTERVAL_SECONDS: int(60, 12 * 3600).default(3_600),
  /** Optional: enables the APIv2 (XML) routes. */
  WECHATPAY_APIV2_KEY: z
    .string()
    .refine((v) => Buffer.byteLength(v, "utf8") === 32, "must be 32 bytes")
    .optional(),
  /**
   * Optional: the APIv2 key before a rotation. Refund notifications queued before it carry a req_info encrypted with
   * the old key; the workers try this key when the current one does not open one. Remove it once the queues hold
   * nothing from before the rotation.
   */
  WECHATPAY_APIV2_KEY_PREVIOUS: z
    .string()
    .refine((v) => Buffer.byteLength(v, "utf8") === 32, "must be 32 bytes")
    .optional(),
  /** Optional: comma-separated PEM files of WeChat Pay platform certificates (certificate mode, or both during the switch). */
  WECHATPAY_PLATFORM_CERT_PATHS: z.string().optional(),
  /** Accepted clock difference between WeChat's `Wechatpay-Timestamp` and ours. WeChat's docs say 5 minutes. */
  WECHATPAY_TIMESTAMP_TOLERANCE_SECONDS: int(1, 3_600).default(300),

  /**
   * Bound on the wait for Redis to confirm an enqueue; past it the ingress answers 503 (WeChat gives us 5 s, and a
   * request's waits together get 4.5 s: see apps/ingress/src/routes/budget.ts).
   */
  INGRESS_ENQUEUE_TIMEOUT_MS: int(50, 4_400).default(2_000),
  /**
   * Replicas that must hold a batch of notifications before the ingress acknowledges it (Redis's WAIT after each
   * batch, on the same connection); 0, the default, sends no WAIT. With a replicated Redis (Sentinel, a managed Redis
   * with a replica) a failover promotes an asynchronous replica, and a 2xx given before the write reached it would be
   * lost with its receipt. WAIT's timeout is derived: half of INGRESS_ENQUEUE_TIMEOUT_MS, at most 1 s
   * (apps/ingress/src/settings.ts); past it the batch is answered 503 QUEUE_NOT_REPLICATED. Set it only where the
   * primary has that many replicas: otherwise every notification is answered 503.
   */
  INGRESS_REDIS_MIN_REPLICAS: int(0, 16).default(0),
  /**
   * Largest accepted notification body. Real notifications are ~1–2 KiB. At most 64 KiB: the workers open a queued
   * body with @wpn/wechatpay's parsers at their default limits (APIv2 XML 64 KiB, DEFAULT_V2_MAX_BYTES; APIv3 envelope
   * 256 KiB), so a larger setting let the ingress acknowledge bodies the workers then dead-lettered
   * (apps/ingress/test/body-limit.test.ts).
   */
  INGRESS_BODY_LIMIT_BYTES: int(1_024, 64 * 1024).default(64 * 1024),
  /**
   * How long a notification id is remembered after its first receipt, so WeChat's 24 h of resends are answered
   * without a second job. At least 25 h: a shorter memory would let a resend after the job's removal enqueue again.
   */
  INGRESS_DEDUPE_TTL_SECONDS: int(25 * 3600, 30 * 24 * 3600).default(25 * 3600),
  /** Waiting jobs above which /health/ready and metrics report backpressure (requests are still accepted). */
  INGRESS_QUEUE_WAITING_CEILING: int(1, 100_000_000).default(50_000),
  /**
   * Worker threads that check APIv3 RSA signatures (RsaVerifyPool), fed one batch per event-loop turn; 0 checks
   * them on the event loop. RSA is the largest single cost of a request (~25 µs): with the thread the event loop
   * spends 25–30% less CPU per request, which pays where a core is spare. On the 2-core bench machine shared with
   * Redis one process answered 7–16% more per second in slow host periods and 2–10% less in fast ones
   * (bench/ingress-report.md). Light load (batches under 4) is checked inline either way. 0 suits a single-core
   * container, where the hand-over would only add work.
   */
  INGRESS_VERIFY_THREADS: int(0, 16).default(1),
  /**
   * Lame-duck delay after SIGTERM/SIGINT, before the ingress closes: it keeps serving as usual meanwhile, with
   * /health/ready 503 and every answer saying `Connection: close`, so the load balancer stops choosing it and its
   * clients move off their kept-alive connections — which closing would otherwise shut under a request being written
   * on one (cut off unanswered; WeChat resends it). 0, the default, closes at once, as before. At most
   * INGRESS_SHUTDOWN_DRAIN_MAX_MS (2 s): the delay counts against APP_SHUTDOWN_DEADLINE_MS (10 s), and the closing
   * after it may take INGRESS_CLOSE_MAX_MS (8 s).
   */
  INGRESS_SHUTDOWN_DRAIN_MS: int(0, INGRESS_SHUTDOWN_DRAIN_MAX_MS).default(0),

  /**
   * Apply jobs processed at once per worker process. Payment jobs hold no connection of their own: concurrent
   * payments are applied together, one statement per batch (at most 2 batches in flight), so this is what lets
   * batches form — it bounds the batch size. Refund jobs take a pooled connection for their statement, waiting
   * in the pool's queue when more run than it has connections. 128: batches of ~40 payments under load, which
   * halved the per-notification statement and round-trip cost against 32 (bench/worker-report.md); when the
   * queue is short, batches are just what is waiting, so a larger setting costs nothing at low load.
   */
  WORKER_CONCURRENCY: int(1, 500).default(128),
  /**
   * Parse jobs processed at once per worker process. They hold no connection of their own: concurrent parse
   * jobs are recorded together, one statement and one enqueue per batch (at most 2 batches in flight), so this
   * is what lets batches form — it bounds the batch size. 128 for the same reason as WORKER_CONCURRENCY.
   */
  WORKER_PARSE_CONCURRENCY: int(1, 500).default(128),
  /** Worker processes `npm start` launches. */
  WORKER_PROCESSES: int(1, 64).default(1),
  /**
   * This process's index among the worker processes on one machine (0-based; the launcher sets it). The
   * health server listens on WORKER_HEALTH_PORT + WORKER_INDEX, so processes on one machine do not collide.
   */
  WORKER_INDEX: int(0, 1_023).default(0),
  /**
   * How long a worker's claim on a job lasts without renewal (renewed every half of it while the job runs).
   * A worker that dies (SIGKILL, power loss) leaves its jobs to be re-run after this; shorter = faster
   * recovery, but an event loop blocked longer than this lets a healthy job be run twice (harmless: effects
   * are idempotent, just wasted work).
   */
  WORKER_LOCK_DURATION_MS: int(1_000, 600_000).default(30_000),
  /** How often each worker looks for jobs whose claim expired (stalled) and puts them back. */
  WORKER_STALLED_INTERVAL_MS: int(500, 600_000).default(30_000),
  /** Times a job may stall (its worker died) before it is failed and dead-lettered instead of re-run. */
  WORKER_MAX_STALLED_COUNT: int(0, 100).default(3),
  /**
   * How long a payment for an unknown out_trade_no (and a key that does not fit yet) keeps being retried before it is
   * dead-lettered, from the job's first run by a worker (jobs queued while no worker ran get a whole window when they
   * are first run) or from the end of a later PostgreSQL outage (an outage does not use it up);
   * and a refund of a transaction not seen yet before it is decided TRANSACTION_MISMATCH (review).
   * At most 3 days: the parse and apply queues' 20 attempts last at least that long (queue options). The window ends
   * such a fault, not the attempts: a job whose last attempt fails with it while the window lasts waits for the window
   * without using an attempt (the worker's stage.ts, failureVerdict), as after an outage, which gives a whole window.
   */
  WORKER_UNKNOWN_ORDER_RETRY_SECONDS: int(1, 3 * 24 * 3600).default(3_600),
  /**
   * Times one job may be put back without using an attempt because PostgreSQL did not answer when it failed (an
   * outage pause); past it, such a failure is an ordinary attempt, so a job whose own statement brings the database
   * down is retried and dead-lettered like any failing job instead of being put back for ever. A paused process takes
   * no job until PostgreSQL answers again, so an outage of any length puts a job back about once per worker process
   * that meets it with the job: 10 rides out several outages (or restarts, failovers) in one job's life, while a job
   * that crashes the database every time it runs (a pause lasts 2 s or more) stops being spared after ~10 crashes.
   * 0: an outage failure always uses an attempt (the process still pauses).
   */
  WORKER_DB_OUTAGE_MAX_PAUSES: int(0, 1_000).default(10),
  /** Grace period for in-flight jobs on SIGTERM. */
  WORKER_SHUTDOWN_TIMEOUT_MS: int(100, 120_000).default(10_000),
  /** Whether a successful refund puts the order's items back into stock: `full` only on a full refund, `none` never. */
  REFUND_RESTOCK_POLICY: z.enum(["full", "none"]).default("full"),
  /** Publish applied business events to the `notify.publish` queue for the merchant's other systems. */
  PUBLISH_EVENTS: bool.default(false),
  /**
   * Waiting and delayed (a consumer's retries in their backoff) jobs in `notify.publish` at or above which a worker
   * stores a new event in PostgreSQL (`PublishOverflow`) instead of adding it, and its relay stops moving stored events
   * back: a consumer that takes nothing (missing, stalled) or fails everything (its downstream down) fills the table, not Redis, whose `maxmemory` the ingress shares (~1.3 KB of Redis per waiting event:
   * 100,000 ≈ 130 MB). Checked and added in one Redis script, so every worker together never pushes it past this.
   */
  PUBLISH_MAX_WAITING: int(1, 100_000_000).default(100_000),

  /**
   * The dashboard's pg pool size per process, apart from PG_POOL_MAX (the workers' setting, which it once shared): a
   * slow page holds at most these connections, however many are opened, and the workers keep theirs. Each page runs
   * its statements in parallel (up to 6: /reviews, the overview); further ones wait up to PG_CONNECT_TIMEOUT_MS for a
   * connection. The session checks have 2 connections of their own besides (apps/dashboard/README.md).
   */
  DASHBOARD_PG_POOL_MAX: int(1, 200).default(5),
  /**
   * PostgreSQL's statement_timeout on the dashboard's connections, ms (the workers' is @wpn/db's 30 s): a page whose
   * statement runs longer — a lock held on its table, a search reading too much — is cancelled then and answered 503
   * STATEMENT_TIMEOUT, instead of holding its connection and the browser that long.
   */
  DASHBOARD_PG_STATEMENT_TIMEOUT_MS: int(100, 600_000).default(5_000),
  /** Dashboard users: `name:role:scrypt-hash` separated by commas (role viewer|operator). See apps/dashboard/README.md. */
  DASHBOARD_USERS: z.string().optional(),
  /**
   * Secret for signing dashboard session cookies: whoever knows it signs their own session, any role. At least 32
   * characters, of at least 8 different ones: the length alone let 32 spaces or one letter repeated through. 8, not
   * more: 32 random hex digits (`openssl rand -hex 16`) hold fewer than 10 different ones about once in 7,000 draws,
   * fewer than 8 practically never. The message does not repeat the value.
   */
  DASHBOARD_SESSION_SECRET: z
    .string()
    .refine(
      (secret) => secret.length >= 32 && new Set(secret).size >= 8,
      "must be a random secret: at least 32 characters, at least 8 of them different, e.g. openssl rand -base64 32 (the value is not repeated)",
    )
    .optional(),
  /** Lifetime of a dashboard login; the session cookie is refused after it (absolute, not sliding). */
  DASHBOARD_SESSION_TTL_SECONDS: int(60, 7 * 24 * 3600).default(8 * 3600),
  /**
   * How long a dashboard session may go unused, seconds, before it is refused like an expired one (PCI DSS 8.2.8 asks
   * for 15 minutes). Use is a request a person makes — a page, a form, a bull-board action — not bull-board's polls of
   * its API, which an open tab nobody looks at sends every few seconds (apps/dashboard/README.md, "Idle timeout").
   * Unset: DASHBOARD_SESSION_IDLE_DEFAULT_SECONDS, or the lifetime when that is shorter (`Config.dashboardSessionIdleSeconds`).
   * Set, it may not exceed DASHBOARD_SESSION_TTL_SECONDS: the lifetime would end every session before the idle limit
   * could, and such a setting is a mistake (the two swapped) worth stopping for. At least 60 s: the replicas' clocks
   * may differ by that much (the dashboard's CLOCK_SKEW_SECONDS), so a shorter limit would not mean what it says.
   */
  DASHBOARD_SESSION_IDLE_SECONDS: int(60, 7 * 24 * 3600).optional(),
  /**
   * Mark dashboard cookies `Secure` on every answer: set to true whenever the dashboard is served over HTTPS (it should
   * be). Unset, they are Secure on answers to requests that came over HTTPS (X-Forwarded-Proto from a trusted proxy).
   * Secure, the session and CSRF secret cookies are `__Host-` cookies (apps/dashboard/README.md).
   */
  DASHBOARD_COOKIE_SECURE: bool.default(false),
  /** Failed dashboard logins accepted per client IP per minute before answering 429. */
  DASHBOARD_LOGIN_ATTEMPTS_PER_MINUTE: int(1, 1_000).default(5),
  /**
   * Behind reverse proxies: trust the X-Forwarded-For/-Host/-Proto they set (the client IP of the login limit, the
   * origin checks). Best the proxies' addresses: only a peer among them is asked, and the client is the first address
   * from the right that is not one of them. `true` takes any peer for ONE proxy (its last hop only, a start-up
   * warning): then a client reaching the port directly picks its own address.
   */
  DASHBOARD_TRUST_PROXY: trustProxy.default(false),
});

/** The files of a comma-separated path setting (blanks between commas ignored). */
export function pathList(value: string | undefined): string[] {
  return (value ?? "")
    .split(",")
    .map((p) => p.trim())
    .filter((p) => p !== "");
}

/** Settings that only make sense together: each pair complete. */
function checkKeyPairs(env: z.infer<typeof envFields>, ctx: z.RefinementCtx): void {
  const pairs = [
    ["WECHATPAY_PUBLIC_KEY_ID", "WECHATPAY_PUBLIC_KEY_PATH"],
    ["WECHATPAY_MERCHANT_SERIAL_NO", "WECHATPAY_MERCHANT_PRIVATE_KEY_PATH"],
  ] as const;
  for (const [a, b] of pairs) {
    if ((env[a] === undefined) !== (env[b] === undefined)) {
      const missing = env[a] === undefined ? a : b;
      const other = missing === a ? b : a;
      ctx.addIssue({ code: "custom", path: [missing], message: `is required when ${other} is set` });
    }
  }
}

/**
 * The process verifies APIv3 signatures (the ingress): it needs at least one way to — the public key, platform
 * certificate files or certificate download. Answers the one-line problem, or null. Only the ingress asks: the
 * workers and the dashboard never verify an APIv3 signature, so a worker-only host needs none of these files.
 */
export function apiV3VerificationProblem(env: Env): string | null {
  if (
    env.WECHATPAY_PUBLIC_KEY_ID !== undefined ||
    pathList(env.WECHATPAY_PLATFORM_CERT_PATHS).length > 0 ||
    env.WECHATPAY_MERCHANT_SERIAL_NO !== undefined
  ) {
    return null;
  }
  return (
    "WECHATPAY_PUBLIC_KEY_ID is required unless WECHATPAY_PLATFORM_CERT_PATHS or certificate download " +
    "(WECHATPAY_MERCHANT_SERIAL_NO and WECHATPAY_MERCHANT_PRIVATE_KEY_PATH) is configured"
  );
}

/** DASHBOARD_SESSION_IDLE_SECONDS, when set, within the session's lifetime (see the field). */
function checkSessionLimits(env: z.infer<typeof envFields>, ctx: z.RefinementCtx): void {
  const idle = env.DASHBOARD_SESSION_IDLE_SECONDS;
  if (idle !== undefined && idle > env.DASHBOARD_SESSION_TTL_SECONDS) {
    ctx.addIssue({
      code: "custom",
      path: ["DASHBOARD_SESSION_IDLE_SECONDS"],
      message: `must not exceed DASHBOARD_SESSION_TTL_SECONDS (${env.DASHBOARD_SESSION_TTL_SECONDS}): the lifetime ends every session first`,
    });
  }
}

/** A dashboard session's idle limit when DASHBOARD_SESSION_IDLE_SECONDS is unset (or the lifetime, if shorter), s. */
export const DASHBOARD_SESSION_IDLE_DEFAULT_SECONDS = 15 * 60;

export const envSchema = envFields.superRefine((env, ctx) => {
  checkKeyPairs(env, ctx);
  checkSessionLimits(env, ctx);
});

/** DATABASE_URL alone, as envSchema checks it (for the scripts that need no merchant settings). */
export const databaseUrlSchema = envFields.shape.DATABASE_URL;

/** REDIS_URL and QUEUE_PREFIX alone, as envSchema checks them (db:prune reads the workers' dead letters). */
export const queueSettingsSchema = envFields.pick({ REDIS_URL: true, QUEUE_PREFIX: true });
/** What db:migrate needs, as envSchema checks it: the database and the migration runner's settings. */
export const migrateSettingsSchema = envFields.pick({
  DATABASE_URL: true,
  MIGRATE_LOCK_TIMEOUT_MS: true,
  MIGRATE_WAIT_SECONDS: true,
});

/** Every variable name the schema reads (`.env.example` documents each; a test checks it). */
export const ENV_NAMES: readonly string[] = Object.keys(envFields.shape);

export type Env = z.infer<typeof envSchema>;
