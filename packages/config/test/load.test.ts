import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  APP_SHUTDOWN_DEADLINE_MS,
  ConfigError,
  ENV_NAMES,
  INGRESS_CLOSE_MAX_MS,
  INGRESS_SHUTDOWN_DRAIN_MAX_MS,
  type LoadOptions,
  loadConfig,
  loadDatabaseUrl,
  loadMigrateSettings,
  loadQueueSettings,
  readEnvironment,
  readMerchantPrivateKeyPem,
} from "@wpn/config";
import { describe, expect, it } from "vitest";

const dir = mkdtempSync(join(tmpdir(), "wpn-config-"));
const keyPath = join(dir, "pub.pem");
writeFileSync(keyPath, "-----BEGIN PUBLIC KEY-----\n...\n-----END PUBLIC KEY-----\n");

const valid = {
  WECHATPAY_MCHID: "1900000109",
  WECHATPAY_APPID: "wxd678efh567hg6787",
  WECHATPAY_APIV3_KEY: "a7cde1ZJB1kG2e7VfTs3jQzaWizur8Gb",
  WECHATPAY_PUBLIC_KEY_ID: "PUB_KEY_ID_0000000000000024101100397200000006",
  WECHATPAY_PUBLIC_KEY_PATH: keyPath,
};

function errorOf(env: Record<string, string>, options: LoadOptions = {}): string {
  try {
    loadConfig(env, options);
  } catch (error) {
    expect(error).toBeInstanceOf(ConfigError);
    return (error as Error).message;
  }
  throw new Error("expected a ConfigError");
}

describe("loadConfig", () => {
  it("applies the documented defaults", () => {
    const config = loadConfig(valid);
    expect(config.DATABASE_URL).toBe("postgresql://postgres@127.0.0.1:5432/wechatpay_notify");
    expect(config.REDIS_URL).toBe("redis://127.0.0.1:6379");
    expect(config.PORT).toBe(3000);
    expect(config.DASHBOARD_PORT).toBe(3001);
    expect(config.WECHATPAY_TIMESTAMP_TOLERANCE_SECONDS).toBe(300);
    expect(config.apiV3KeyBytes.length).toBe(32);
    expect(config.previousApiV3KeyBytes).toBeUndefined();
    const rotated = loadConfig({ ...valid, WECHATPAY_APIV3_KEY_PREVIOUS: "p".repeat(32) });
    expect(rotated.previousApiV3KeyBytes?.toString()).toBe("p".repeat(32));
    expect(errorOf({ ...valid, WECHATPAY_APIV3_KEY_PREVIOUS: "short" })).toBe(
      "WECHATPAY_APIV3_KEY_PREVIOUS must be 32 bytes",
    );
    expect(config.publicKeyPem).toContain("BEGIN PUBLIC KEY");
    expect(config.WECHATPAY_APIV2_KEY).toBeUndefined();
    expect(config.WORKER_CONCURRENCY).toBe(128);
    expect(config.WORKER_PARSE_CONCURRENCY).toBe(128);
    expect(config.WORKER_DB_OUTAGE_MAX_PAUSES).toBe(10);
    expect(config.INGRESS_VERIFY_THREADS).toBe(1);
    expect(loadConfig({ ...valid, INGRESS_VERIFY_THREADS: "0" }).INGRESS_VERIFY_THREADS).toBe(0);
    // Off unless set: no WAIT after the ingress's enqueue batches.
    expect(config.INGRESS_REDIS_MIN_REPLICAS).toBe(0);
  });

  it("gives the dashboard its own pool size and statement timeout, apart from the workers' PG_POOL_MAX", () => {
    const config = loadConfig(valid);
    expect(config.DASHBOARD_PG_POOL_MAX).toBe(5);
    expect(config.DASHBOARD_PG_STATEMENT_TIMEOUT_MS).toBe(5_000);
    const set = loadConfig({ ...valid, PG_POOL_MAX: "20", DASHBOARD_PG_POOL_MAX: "3" });
    expect([set.PG_POOL_MAX, set.DASHBOARD_PG_POOL_MAX]).toEqual([20, 3]);
    expect(loadConfig({ ...valid, DASHBOARD_PG_STATEMENT_TIMEOUT_MS: "100" }).DASHBOARD_PG_STATEMENT_TIMEOUT_MS).toBe(
      100,
    );
    for (const bad of ["0", "201", "1.5", "five"]) {
      expect(errorOf({ ...valid, DASHBOARD_PG_POOL_MAX: bad }), bad).toMatch(/^DASHBOARD_PG_POOL_MAX /);
    }
    for (const bad of ["99", "600001", "5s"]) {
      expect(errorOf({ ...valid, DASHBOARD_PG_STATEMENT_TIMEOUT_MS: bad }), bad).toMatch(
        /^DASHBOARD_PG_STATEMENT_TIMEOUT_MS /,
      );
    }
  });

  it("gives dashboard sessions an idle limit: 15 minutes unless set, never past their lifetime", () => {
    expect(loadConfig(valid).dashboardSessionIdleSeconds).toBe(900);
    expect(loadConfig({ ...valid, DASHBOARD_SESSION_IDLE_SECONDS: "60" }).dashboardSessionIdleSeconds).toBe(60);
    // Unset with a lifetime shorter than the default: the lifetime (such a deployment keeps starting as before).
    expect(loadConfig({ ...valid, DASHBOARD_SESSION_TTL_SECONDS: "600" }).dashboardSessionIdleSeconds).toBe(600);
    const both = { ...valid, DASHBOARD_SESSION_TTL_SECONDS: "3600", DASHBOARD_SESSION_IDLE_SECONDS: "3600" };
    expect(loadConfig(both).dashboardSessionIdleSeconds).toBe(3600);
    expect(errorOf({ ...both, DASHBOARD_SESSION_IDLE_SECONDS: "3601" })).toBe(
      "DASHBOARD_SESSION_IDLE_SECONDS must not exceed DASHBOARD_SESSION_TTL_SECONDS (3600): the lifetime ends every session first",
    );
    for (const bad of ["59", "0", "1.5", "15m"]) {
      expect(errorOf({ ...valid, DASHBOARD_SESSION_IDLE_SECONDS: bad }), bad).toMatch(
        /^DASHBOARD_SESSION_IDLE_SECONDS /,
      );
    }
  });

  it("takes INGRESS_REDIS_MIN_REPLICAS as a whole number of replicas, 0 to 16", () => {
    expect(loadConfig({ ...valid, INGRESS_REDIS_MIN_REPLICAS: "1" }).INGRESS_REDIS_MIN_REPLICAS).toBe(1);
    expect(loadConfig({ ...valid, INGRESS_REDIS_MIN_REPLICAS: "16" }).INGRESS_REDIS_MIN_REPLICAS).toBe(16);
    for (const bad of ["-1", "17", "1.5", "one"]) {
      expect(errorOf({ ...valid, INGRESS_REDIS_MIN_REPLICAS: bad }), bad).toMatch(/^INGRESS_REDIS_MIN_REPLICAS /);
    }
  });

  it("takes INGRESS_SHUTDOWN_DRAIN_MS from 0 (the default: close at once) to what the shutdown deadline leaves", () => {
    expect(loadConfig(valid).INGRESS_SHUTDOWN_DRAIN_MS).toBe(0);
    expect(INGRESS_SHUTDOWN_DRAIN_MAX_MS).toBe(APP_SHUTDOWN_DEADLINE_MS - INGRESS_CLOSE_MAX_MS);
    const max = String(INGRESS_SHUTDOWN_DRAIN_MAX_MS);
    expect(loadConfig({ ...valid, INGRESS_SHUTDOWN_DRAIN_MS: max }).INGRESS_SHUTDOWN_DRAIN_MS).toBe(2_000);
    for (const bad of ["-1", String(INGRESS_SHUTDOWN_DRAIN_MAX_MS + 1), "1.5", "soon"]) {
      expect(errorOf({ ...valid, INGRESS_SHUTDOWN_DRAIN_MS: bad }), bad).toMatch(/^INGRESS_SHUTDOWN_DRAIN_MS /);
    }
  });

  it("takes WECHATPAY_CERT_REFRESH_INTERVAL_SECONDS from a minute to WeChat's 12 h, 1 h by default", () => {
    // WeChat lists a new certificate, and moves an old one's expire_time, 24 h ahead of its switch, and asks for a
    // download at least every 12 h: a longer period could miss the switch (then only a lazy download on a refused
    // notification brings the new certificate, and a retired one stays trusted until its X.509 expiry).
    expect(loadConfig(valid).WECHATPAY_CERT_REFRESH_INTERVAL_SECONDS).toBe(3_600);
    for (const ok of ["60", "43200"]) {
      expect(
        loadConfig({ ...valid, WECHATPAY_CERT_REFRESH_INTERVAL_SECONDS: ok }).WECHATPAY_CERT_REFRESH_INTERVAL_SECONDS,
      ).toBe(Number(ok));
    }
    for (const bad of ["59", "43201", "86400", "604800", "1.5"]) {
      expect(errorOf({ ...valid, WECHATPAY_CERT_REFRESH_INTERVAL_SECONDS: bad }), bad).toMatch(
        /^WECHATPAY_CERT_REFRESH_INTERVAL_SECONDS /,
      );
    }
  });

  it("coerces numbers from strings", () => {
    expect(loadConfig({ ...valid, PORT: "8080", WORKER_CONCURRENCY: "48" })).toMatchObject({
      PORT: 8080,
      WORKER_CONCURRENCY: 48,
    });
  });

  it("refuses a number setting that is not plain decimal digits instead of reading it as some other number", () => {
    // Number() reads " " as 0, "0x1F90" as 8080 and "1e3" as 1000: a blank-with-space PORT became a random port,
    // a stray space in WORKER_MAX_STALLED_COUNT turned stalled-job recovery off.
    for (const [name, bad] of [
      ["PORT", " "],
      ["PORT", "0x1F90"],
      ["WORKER_CONCURRENCY", "1e2"],
      ["WORKER_MAX_STALLED_COUNT", "\t"],
      ["INGRESS_VERIFY_THREADS", "+1"],
      ["PG_POOL_MAX", " 10"],
    ] as const) {
      expect(errorOf({ ...valid, [name]: bad }), JSON.stringify(bad)).toBe(
        `${name} must be a whole number (decimal digits)`,
      );
    }
  });

  it("refuses PORT=0 and DASHBOARD_PORT=0 (a random port); WORKER_HEALTH_PORT=0 stays a free port per worker", () => {
    // 0 listened on a port the system picked, while the ingress logged "port":0: never where WeChat's notify_url or a
    // load balancer points. Worker processes started side by side (the tests) use WORKER_HEALTH_PORT=0.
    for (const name of ["PORT", "DASHBOARD_PORT"]) {
      expect(errorOf({ ...valid, [name]: "0" }), name).toBe(
        `${name} must be a port from 1 to 65535: 0 (a port picked at random) is never where WeChat's notify_url or a load balancer points`,
      );
    }
    expect(loadConfig({ ...valid, WORKER_HEALTH_PORT: "0" }).WORKER_HEALTH_PORT).toBe(0);
    expect(loadConfig({ ...valid, PORT: "1", DASHBOARD_PORT: "65535" })).toMatchObject({
      PORT: 1,
      DASHBOARD_PORT: 65_535,
    });
  });

  it("names a missing variable in one line", () => {
    const { WECHATPAY_MCHID: _, ...rest } = valid;
    expect(errorOf(rest)).toBe("WECHATPAY_MCHID is required");
  });

  it("says what is wrong with a malformed value", () => {
    expect(errorOf({ ...valid, WECHATPAY_APIV3_KEY: "short" })).toBe("WECHATPAY_APIV3_KEY must be 32 bytes");
    expect(errorOf({ ...valid, WECHATPAY_APIV2_KEY: "x".repeat(31) })).toBe("WECHATPAY_APIV2_KEY must be 32 bytes");
    expect(errorOf({ ...valid, PORT: "http" })).toMatch(/^PORT /);
    // The length is part of the rule (README: 6–32 ASCII digits): "(digits)" told the owner of a 5-digit or 33-digit
    // value, all digits, nothing about what was wrong.
    const mchidRule = "WECHATPAY_MCHID must be the merchant number: 6 to 32 ASCII digits, nothing else";
    for (const mchid of ["abc", "12345", "1".repeat(33), " 1900000109"]) {
      expect(errorOf({ ...valid, WECHATPAY_MCHID: mchid }), JSON.stringify(mchid)).toBe(mchidRule);
    }
    // A public-key id with whitespace would load and never equal a Wechatpay-Serial header.
    for (const id of [`${valid.WECHATPAY_PUBLIC_KEY_ID} `, `${valid.WECHATPAY_PUBLIC_KEY_ID}\n`, "F5765756002FDD77"]) {
      expect(errorOf({ ...valid, WECHATPAY_PUBLIC_KEY_ID: id }), JSON.stringify(id)).toBe(
        "WECHATPAY_PUBLIC_KEY_ID must be the WeChat Pay public key id, PUB_KEY_ID_ then ASCII letters, digits, '_' or '-' (no spaces)",
      );
    }
    expect(errorOf({ ...valid, DATABASE_URL: "not a url" })).toMatch(/^DATABASE_URL /);
    // Shorter than WeChat's 24 h of resends (plus margin) would let a resend enqueue a second job.
    expect(errorOf({ ...valid, INGRESS_DEDUPE_TTL_SECONDS: "86400" })).toMatch(/^INGRESS_DEDUPE_TTL_SECONDS .*90000/);
    expect(loadConfig({ ...valid, INGRESS_DEDUPE_TTL_SECONDS: "90000" }).INGRESS_DEDUPE_TTL_SECONDS).toBe(90_000);
    // No database named: pg would use the user's name, the migrator `postgres`.
    expect(errorOf({ ...valid, DATABASE_URL: "postgresql://alice@127.0.0.1:5432" })).toMatch(
      /^DATABASE_URL must name its database/,
    );
    expect(errorOf({ ...valid, DATABASE_URL: "postgresql://alice@127.0.0.1:5432/" })).toMatch(
      /^DATABASE_URL must name its database/,
    );
    // Longer than the parse and apply queues' 20 attempts last (apps/worker/test/retry-window.test.ts).
    expect(errorOf({ ...valid, WORKER_UNKNOWN_ORDER_RETRY_SECONDS: "259201" })).toMatch(
      /^WORKER_UNKNOWN_ORDER_RETRY_SECONDS /,
    );
    // Bounded: unbounded pauses would put back for ever a job whose own statement brings PostgreSQL down.
    expect(errorOf({ ...valid, WORKER_DB_OUTAGE_MAX_PAUSES: "1001" })).toMatch(/^WORKER_DB_OUTAGE_MAX_PAUSES /);
    expect(errorOf({ ...valid, WORKER_DB_OUTAGE_MAX_PAUSES: "-1" })).toMatch(/^WORKER_DB_OUTAGE_MAX_PAUSES /);
    expect(loadConfig({ ...valid, WORKER_DB_OUTAGE_MAX_PAUSES: "0" }).WORKER_DB_OUTAGE_MAX_PAUSES).toBe(0);
  });

  it("bounds notify.publish's waiting events by PUBLISH_MAX_WAITING, a positive whole number", () => {
    expect(loadConfig(valid).PUBLISH_MAX_WAITING).toBe(100_000);
    expect(loadConfig({ ...valid, PUBLISH_MAX_WAITING: "5" }).PUBLISH_MAX_WAITING).toBe(5);
    // 0 would divert every event, and the relay would never move one back.
    for (const bad of ["0", "-1", "1.5", "1e5", "100000000000", "many"]) {
      expect(errorOf({ ...valid, PUBLISH_MAX_WAITING: bad }), bad).toMatch(/^PUBLISH_MAX_WAITING /);
    }
  });

  it("refuses a DATABASE_URL or REDIS_URL of the wrong kind at start-up, in one line", () => {
    // Each of these passed a bare URL check and failed later, with a stack trace, in pg, ioredis or parseDatabaseUrl.
    const database = /^DATABASE_URL must be a postgresql:\/\/ \(or postgres:\/\/\) URL with a host, e\.g\. postgresql:/;
    for (const url of [
      "localhost:5432/db",
      "mysql://root@127.0.0.1:3306/shop",
      "http://127.0.0.1:5432/db",
      "postgresql:///wechatpay_notify",
    ]) {
      expect(errorOf({ ...valid, DATABASE_URL: url }), url).toMatch(database);
    }
    expect(errorOf({ ...valid, DATABASE_URL: "postgresql://u@h:5432/db?schema=bad-name" })).toBe(
      'DATABASE_URL ?schema= must be a plain identifier (letters, digits and _, not starting with a digit, at most 63), not "bad-name"',
    );
    const redis = /^REDIS_URL must be a redis:\/\/ \(or rediss:\/\/\) URL with a host, e\.g\. redis:/;
    for (const url of ["http://x", "127.0.0.1:6379", "redis://", "not a url"]) {
      expect(errorOf({ ...valid, REDIS_URL: url }), url).toMatch(redis);
    }
    for (const url of [
      "postgres://app:s%40cret@db.internal:5432/wechatpay_notify?schema=tenant_1&sslmode=require",
      // A Unix socket: no host in the authority, the socket directory in ?host= (as pg reads it).
      "postgresql:///wechatpay_notify?host=/var/run/postgresql",
    ]) {
      expect(loadConfig({ ...valid, DATABASE_URL: url }).DATABASE_URL).toBe(url);
    }
    for (const url of ["rediss://default:pw@cache.internal:6380/2", "redis://127.0.0.1:6379"]) {
      expect(loadConfig({ ...valid, REDIS_URL: url }).REDIS_URL).toBe(url);
    }
  });

  it("refuses a DATABASE_URL or REDIS_URL with spaces around or in it, which the URL check ignored and the drivers did not", () => {
    // WHATWG URL drops spaces and control characters around a URL and tabs and line breaks within, so these passed;
    // pg read " postgresql://…" as a database of that name on host "base" and "…/db " as database "db ", and ioredis
    // threw TypeError (Invalid URL) from `new Redis` for " redis://…": a stack trace at start.
    const spaced = "must not contain spaces, tabs or line breaks (write a space in a password as %20)";
    for (const [name, url] of [
      ["DATABASE_URL", " postgresql://postgres@127.0.0.1:5432/wechatpay_notify"],
      ["DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/wechatpay_notify "],
      ["DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/wechat\tpay"],
      ["REDIS_URL", " redis://127.0.0.1:6379"],
      ["REDIS_URL", "redis://127.0.0.1:6379\r"],
      ["REDIS_URL", "redis://:pass word@127.0.0.1:6379"],
    ] as const) {
      expect(errorOf({ ...valid, [name]: url }), JSON.stringify(url)).toBe(`${name} ${spaced}`);
    }
    expect(() => loadDatabaseUrl({ DATABASE_URL: "postgresql://u@h/db " })).toThrow(`DATABASE_URL ${spaced}`);
  });

  it("refuses a REDIS_URL that ioredis cannot read — a bare % in its password, a path that is no database number", () => {
    // ioredis decodes the user name and password with decodeURIComponent, which threw URIError from `new Redis` (a
    // stack trace and exit 1) for a generated password with a bare %; it took the path for the database index, so
    // "/x" crashed at the first SELECT and "/1.5" was SELECTed as is. The message repeats no part of the URL.
    const userinfo =
      "REDIS_URL has a % in its user name or password that does not begin an escape (%XX): write % as %25 (the value is not repeated)";
    for (const url of ["redis://:p%zz@127.0.0.1:6379", "redis://us%er:pw@127.0.0.1:6379", "redis://:100%@h:6379"]) {
      expect(errorOf({ ...valid, REDIS_URL: url }), url).toBe(userinfo);
    }
    const database = "REDIS_URL must have the database number as its path (/0, /1, …), or no path";
    for (const url of [
      "redis://127.0.0.1:6379/x",
      "redis://127.0.0.1:6379/1.5",
      "redis://h:6379/-1",
      "redis://h/1/2",
    ]) {
      expect(errorOf({ ...valid, REDIS_URL: url }), url).toBe(database);
    }
    for (const url of ["redis://:p%25zz@h:6379", "redis://h:6379/", "redis://h:6379/15", "rediss://u:p%40ss@h/0"]) {
      expect(loadConfig({ ...valid, REDIS_URL: url }).REDIS_URL).toBe(url);
    }
  });

  it("refuses a variable one letter or two off a setting's name, which was silently unused; leaves other variables alone", () => {
    // WECHATPAY_APIV3_KEY_PREVIOS left the rotation's old key unset (queued notifications dead-lettered),
    // PUBLISH_EVENT=true published nothing, DASHBOARD_SESION_SECRET gave each process a random secret: all started.
    for (const [typo, meant] of [
      ["WECHATPAY_APIV3_KEY_PREVIOS", "WECHATPAY_APIV3_KEY_PREVIOUS"],
      ["PUBLISH_EVENT", "PUBLISH_EVENTS"],
      ["DASHBOARD_SESION_SECRET", "DASHBOARD_SESSION_SECRET"],
      ["INGRESS_REDIS_MIN_REPLICA", "INGRESS_REDIS_MIN_REPLICAS"],
      ["WORKER_CONCURENCY", "WORKER_CONCURRENCY"],
      ["REDIS_URI", "REDIS_URL"],
      ["log_level", "LOG_LEVEL"],
    ] as const) {
      expect(errorOf({ ...valid, [typo]: "s3cret-value" }), typo).toBe(
        `${typo} is not a setting: did you mean ${meant}? (an unused variable is refused when it is this close to one)`,
      );
    }
    expect(() => loadMigrateSettings({ MIGRATE_WAIT_SECOND: "600" })).toThrow("MIGRATE_WAIT_SECOND is not a setting");
    expect(() => loadDatabaseUrl({ DATABASE_URI: "postgresql://u@h/db" })).toThrow("DATABASE_URI is not a setting");
    expect(() => loadQueueSettings({ QUEUE_PREFIXX: "shop" })).toThrow("QUEUE_PREFIXX is not a setting");
    // What an environment holds besides: the shell's, CI's, Kubernetes' service links, the simulator's own.
    const others = {
      HOME: "/root",
      HOSTNAME: "box",
      PATH: "/usr/bin",
      PG_VERSION: "17",
      WORKER_SERVICE_HOST: "10.0.0.1",
      INGRESS_PORT_3000_TCP: "tcp://10.0.0.2:3000",
      WECHATPAY_SIM_KEYS: ".dev/keys",
      WECHATPAY_SIM_PLATFORM_CERT_SERIAL: "ABC",
      TEST_DATABASE_URL: "postgresql://u@h/t",
      TEST_REDIS_URL: "redis://h",
      DATABASE_URL_PREFIX: "",
    };
    expect(loadConfig({ ...valid, ...others }).WECHATPAY_MCHID).toBe(valid.WECHATPAY_MCHID);
  });

  it("refuses Prisma's pool parameters in DATABASE_URL, which the pg driver ignores, naming the setting that does it", () => {
    // A Prisma user's URL keeps `?connection_limit=5`: the pools took PG_POOL_MAX (10 per worker) all the same.
    expect(errorOf({ ...valid, DATABASE_URL: "postgresql://u:pw@h/db?connection_limit=5" })).toBe(
      "DATABASE_URL must not carry ?connection_limit=, Prisma's own parameter, which this project's pg driver ignores: set PG_POOL_MAX (the workers) and DASHBOARD_PG_POOL_MAX instead",
    );
    expect(errorOf({ ...valid, DATABASE_URL: "postgresql://u@h/db?sslmode=require&pool_timeout=20" })).toBe(
      "DATABASE_URL must not carry ?pool_timeout=, Prisma's own parameter, which this project's pg driver ignores: set PG_CONNECT_TIMEOUT_MS instead",
    );
    expect(() => loadDatabaseUrl({ DATABASE_URL: "postgresql://u@h/db?connection_limit=1" })).toThrow(ConfigError);
    const url = "postgresql://u@h/db?schema=shop&sslmode=require&application_name=x";
    expect(loadConfig({ ...valid, DATABASE_URL: url }).DATABASE_URL).toBe(url);
  });

  it("refuses a WECHATPAY_APPID with spaces or other characters no appid has", () => {
    // A quoted .env value or a Kubernetes secret keeps the spaces and line breaks a copy-paste brought; the appid was
    // taken as written and shown so on the dashboard's Keys page.
    const message =
      "WECHATPAY_APPID must be the appid as WeChat shows it: ASCII letters, digits, '_' or '-', at most 64";
    for (const appid of [
      " wxd678efh567hg6787",
      "wxd678efh567hg6787 ",
      "wxd678 efh567hg6787",
      "wxd678efh567hg6787\n",
      "wx中文",
    ]) {
      expect(errorOf({ ...valid, WECHATPAY_APPID: appid }), JSON.stringify(appid)).toBe(message);
    }
    expect(errorOf({ ...valid, WECHATPAY_APPID: "w".repeat(65) })).toBe(message);
    expect(loadConfig({ ...valid, WECHATPAY_APPID: "ww1234567890abcdef" }).WECHATPAY_APPID).toBe("ww1234567890abcdef");
  });

  it("refuses a DASHBOARD_SESSION_SECRET that is no random secret — spaces, one character repeated — without repeating it", () => {
    // Only the length was checked: 32 spaces or "aaaa…" signed every session cookie, and whoever guessed it could
    // sign their own (an operator's session).
    const message =
      "DASHBOARD_SESSION_SECRET must be a random secret: at least 32 characters, at least 8 of them different, e.g. openssl rand -base64 32 (the value is not repeated)";
    for (const secret of [
      " ".repeat(32),
      "a".repeat(40),
      "ab".repeat(20),
      "passwordpasswordpasswordpassword",
      "\t".repeat(32),
    ]) {
      expect(errorOf({ ...valid, DASHBOARD_SESSION_SECRET: secret }), JSON.stringify(secret)).toBe(message);
    }
    expect(errorOf({ ...valid, DASHBOARD_SESSION_SECRET: "short" })).toBe(message);
    for (const secret of ["test-secret-test-secret-test-secret-0123", "kY3v0b9Qm1xL8dZ2pR7sT4wE6nH5cJ0aUq9fG2iB1o8"]) {
      expect(loadConfig({ ...valid, DASHBOARD_SESSION_SECRET: secret }).DASHBOARD_SESSION_SECRET).toBe(secret);
    }
  });

  it("refuses a REDIS_URL query that ioredis would misread or ignore; takes db=N and family=4|6", () => {
    // ioredis copies every query parameter into the connection's options as a string, under the options this project
    // sets: ?tls=true turned TLS on for a redis:// URL, ?family=IPv6 and ?db=x failed only at connect (SELECT NaN, an
    // unhandled error), ?db= beside a path database was dropped for the path's, and anything else (?foo=1, a typo)
    // was silently ignored. The messages repeat no part of the URL.
    const query =
      "REDIS_URL takes no query parameter but db=<number> and family=4 or 6, each once (ioredis reads any other as a connection option or ignores it; the value is not repeated)";
    for (const url of [
      "redis://127.0.0.1:6379?tls=true",
      "redis://127.0.0.1:6379?foo=1",
      "redis://127.0.0.1:6379?hunter2",
      "redis://h:6379?family=IPv6",
      "redis://h:6379?family=5",
      "redis://h:6379?db=x",
      "redis://h:6379?db=",
      "redis://h:6379?db=1&db=2",
      "redis://h:6379?enableOfflineQueue=false",
    ]) {
      expect(errorOf({ ...valid, REDIS_URL: url }), url).toBe(query);
    }
    expect(errorOf({ ...valid, REDIS_URL: "redis://h:6379/1?db=3" })).toBe(
      "REDIS_URL gives its database twice, as its path and as ?db=: keep one",
    );
    for (const url of [
      "redis://h:6379?db=3",
      "redis://h:6379?family=6",
      "rediss://h/2?family=4",
      "redis://h:6379/?db=0",
    ]) {
      expect(loadConfig({ ...valid, REDIS_URL: url }).REDIS_URL).toBe(url);
    }
  });

  it("refuses a DATABASE_URL with a bare % in its database or user name, which the scripts decode", () => {
    // parseDatabaseUrl (db:migrate, db:prune, the tests' databases) and the scripts' error messages decode both with
    // decodeURIComponent: a % not beginning an escape threw URIError, a stack trace and exit 1. The message repeats no
    // part of the URL: its password is in it.
    const bare =
      "DATABASE_URL has a % in its database or user name that does not begin an escape (%XX): write % as %25 (the value is not repeated)";
    for (const url of [
      "postgresql://postgres@127.0.0.1:5432/wpn%zz",
      "postgresql://postgres:s3cret@127.0.0.1:5432/100%",
      "postgresql://us%er@127.0.0.1:5432/wechatpay_notify",
    ]) {
      expect(errorOf({ ...valid, DATABASE_URL: url }), url).toBe(bare);
      expect(() => loadDatabaseUrl({ DATABASE_URL: url }), url).toThrow(bare);
    }
    // pg reads a bare % in the password as written (and nothing here decodes it); an escaped one is fine anywhere.
    for (const url of ["postgresql://u:p%zz@h:5432/db", "postgresql://u%25x@h:5432/wpn%25zz"]) {
      expect(loadConfig({ ...valid, DATABASE_URL: url }).DATABASE_URL).toBe(url);
    }
  });

  it("refuses a WECHATPAY_API_BASE_URL with credentials, a query or a fragment, without repeating them", () => {
    // fetch refuses a URL with credentials in a TypeError that quotes it whole (and the download's failure was logged
    // with it); a query or fragment would have had /v3/certificates appended after it. A proxy's path prefix is fine.
    for (const url of [
      "https://proxy-user:s3cret-pw@api.mch.weixin.qq.com",
      "https://s3cret-token@api.mch.weixin.qq.com/",
      "https://api.mch.weixin.qq.com/?token=s3cret-q",
      "https://api.mch.weixin.qq.com/#s3cret-f",
    ]) {
      const message = errorOf({ ...valid, WECHATPAY_API_BASE_URL: url });
      expect(message, url).toBe(
        "WECHATPAY_API_BASE_URL must be WeChat Pay's API host (or a proxy's, with a path prefix if it needs one), " +
          "without a user name, password, query or fragment: put a proxy's credentials in the proxy, not in this URL",
      );
      expect(message).not.toContain("s3cret");
    }
    const prefixed = "http://wechat-proxy.internal:8080/wechatpay/";
    expect(loadConfig({ ...valid, WECHATPAY_API_BASE_URL: prefixed }).WECHATPAY_API_BASE_URL).toBe(prefixed);
  });

  it("refuses a WECHATPAY_API_BASE_URL that is not http(s), or has spaces in or around it", () => {
    // Both passed: fetch cannot download from ftp:// or redis:// (every download failed, retried for ever), and the
    // download appends /v3/certificates to the text as written, so "https://host/ " asked for "/%20/v3/certificates".
    for (const url of [
      "ftp://api.mch.weixin.qq.com",
      "redis://api.mch.weixin.qq.com",
      "ws://api.mch.weixin.qq.com",
      "https://api.mch.weixin.qq.com/ ",
      " https://api.mch.weixin.qq.com",
      "https://api.mch.weixin.qq.com\r",
    ]) {
      expect(errorOf({ ...valid, WECHATPAY_API_BASE_URL: url }), JSON.stringify(url)).toBe(
        "WECHATPAY_API_BASE_URL must be an https:// (or http://) URL, without spaces, tabs or line breaks",
      );
    }
    for (const url of ["https://api.mch.weixin.qq.com/", "HTTPS://api2.mch.weixin.qq.com", "http://127.0.0.1:4600"]) {
      expect(loadConfig({ ...valid, WECHATPAY_API_BASE_URL: url }).WECHATPAY_API_BASE_URL).toBe(url);
    }
  });

  it("answers libpq's socket form (user@ and no host) with the URL form that says the same", () => {
    // `postgresql://postgres@/db?host=/dir` is libpq's; WHATWG URL, which pg and this project parse with, has no
    // user without a host. Before, the message only showed a TCP example.
    expect(
      errorOf({ ...valid, DATABASE_URL: "postgresql://postgres@/wechatpay_notify?host=/var/run/postgresql" }),
    ).toBe(
      "DATABASE_URL must be a postgresql:// (or postgres://) URL with a host, e.g. postgresql://postgres@127.0.0.1:5432/wechatpay_notify; " +
        "for a Unix socket, the user goes into the query: postgresql:///wechatpay_notify?host=/var/run/postgresql&user=postgres",
    );
    expect(errorOf({ ...valid, DATABASE_URL: "postgres://app:s%40cret@/shop?host=/tmp&schema=tenant_1" })).toMatch(
      /; for a Unix socket, the user goes into the query: postgres:\/\/\/shop\?host=\/tmp&schema=tenant_1&user=app&password=<password>$/,
    );
    // A password libpq takes from the query (password=, sslpassword=) was quoted back in the printed, logged message.
    const inQuery = errorOf({
      ...valid,
      DATABASE_URL: "postgresql://app@/shop?host=/tmp&password=hunter2&sslpassword=s3cret-kp&sslmode=require",
    });
    expect(inQuery).toMatch(
      /: postgresql:\/\/\/shop\?host=\/tmp&password=<password>&sslpassword=<password>&sslmode=require&user=app$/,
    );
    expect(inQuery).not.toMatch(/hunter2|s3cret/);
  });

  it("validates DATABASE_URL alone for the scripts that need no merchant (db:migrate, db:prune)", () => {
    expect(loadDatabaseUrl({})).toBe("postgresql://postgres@127.0.0.1:5432/wechatpay_notify");
    expect(loadDatabaseUrl({ DATABASE_URL: "", WECHATPAY_MCHID: "x" })).toBe(
      "postgresql://postgres@127.0.0.1:5432/wechatpay_notify",
    );
    expect(loadDatabaseUrl({ DATABASE_URL: "postgresql://u@h/db" })).toBe("postgresql://u@h/db");
    expect(() => loadDatabaseUrl({ DATABASE_URL: "mysql://u@h/db" })).toThrow(ConfigError);
    expect(() => loadDatabaseUrl({ DATABASE_URL: "mysql://u@h/db" })).toThrow(/^DATABASE_URL must be a postgresql/);
  });

  it("validates REDIS_URL and QUEUE_PREFIX alone for db:prune, which reads the dead letters", () => {
    expect(loadQueueSettings({ WECHATPAY_MCHID: "x" })).toEqual({
      REDIS_URL: "redis://127.0.0.1:6379",
      QUEUE_PREFIX: "wpn",
    });
    expect(loadQueueSettings({ REDIS_URL: "rediss://r:6380", QUEUE_PREFIX: "shop-1" })).toEqual({
      REDIS_URL: "rediss://r:6380",
      QUEUE_PREFIX: "shop-1",
    });
    expect(() => loadQueueSettings({ QUEUE_PREFIX: "a:b" })).toThrow(/^QUEUE_PREFIX must be letters/);
    expect(() => loadQueueSettings({ REDIS_URL: "http://r" })).toThrow(ConfigError);
  });

  it("validates db:migrate's settings without the merchant's: DATABASE_URL and MIGRATE_*, with the runner's defaults", () => {
    expect(loadMigrateSettings({ WECHATPAY_MCHID: "x" })).toEqual({
      DATABASE_URL: "postgresql://postgres@127.0.0.1:5432/wechatpay_notify",
      MIGRATE_LOCK_TIMEOUT_MS: 2_000,
      MIGRATE_WAIT_SECONDS: 300,
    });
    expect(loadMigrateSettings({ MIGRATE_LOCK_TIMEOUT_MS: "500", MIGRATE_WAIT_SECONDS: "" })).toMatchObject({
      MIGRATE_LOCK_TIMEOUT_MS: 500,
      MIGRATE_WAIT_SECONDS: 300,
    });
    // 0 would turn lock_timeout off: the wait this setting exists to bound.
    expect(() => loadMigrateSettings({ MIGRATE_LOCK_TIMEOUT_MS: "0" })).toThrow(/^MIGRATE_LOCK_TIMEOUT_MS /);
    expect(() => loadMigrateSettings({ MIGRATE_WAIT_SECONDS: "soon" })).toThrow(ConfigError);
    expect(() => loadMigrateSettings({ DATABASE_URL: "mysql://u@h/db" })).toThrow(/^DATABASE_URL must be a postgresql/);
  });

  it("reports a key file that does not exist", () => {
    expect(errorOf({ ...valid, WECHATPAY_PUBLIC_KEY_PATH: join(dir, "missing.pem") })).toBe(
      `WECHATPAY_PUBLIC_KEY_PATH file ${join(dir, "missing.pem")} does not exist`,
    );
  });

  it("takes the WeChat Pay public key, platform certificates or certificate download, each pair complete", () => {
    const { WECHATPAY_PUBLIC_KEY_ID: _id, WECHATPAY_PUBLIC_KEY_PATH: _path, ...noPublicKey } = valid;
    const ingress = { verifiesApiV3Signatures: true };
    expect(errorOf(noPublicKey, ingress)).toBe(
      "WECHATPAY_PUBLIC_KEY_ID is required unless WECHATPAY_PLATFORM_CERT_PATHS or certificate download " +
        "(WECHATPAY_MERCHANT_SERIAL_NO and WECHATPAY_MERCHANT_PRIVATE_KEY_PATH) is configured",
    );
    expect(errorOf({ ...noPublicKey, WECHATPAY_PUBLIC_KEY_ID: valid.WECHATPAY_PUBLIC_KEY_ID })).toBe(
      "WECHATPAY_PUBLIC_KEY_PATH is required when WECHATPAY_PUBLIC_KEY_ID is set",
    );
    const merchantKey = join(dir, "apiclient_key.pem");
    writeFileSync(merchantKey, "-----BEGIN PRIVATE KEY-----\n...\n-----END PRIVATE KEY-----\n");
    expect(errorOf({ ...noPublicKey, WECHATPAY_MERCHANT_PRIVATE_KEY_PATH: merchantKey })).toBe(
      "WECHATPAY_MERCHANT_SERIAL_NO is required when WECHATPAY_MERCHANT_PRIVATE_KEY_PATH is set",
    );
    expect(errorOf({ ...valid, WECHATPAY_MERCHANT_SERIAL_NO: "not hex" })).toBe(
      "WECHATPAY_MERCHANT_SERIAL_NO must be the merchant API certificate's serial number (hex digits)",
    );
    const downloading = loadConfig({
      ...noPublicKey,
      WECHATPAY_MERCHANT_SERIAL_NO: "3775B6A45ACD588826D15E583A95F5DD1A3F3AA5",
      WECHATPAY_MERCHANT_PRIVATE_KEY_PATH: merchantKey,
    });
    expect(downloading.publicKeyPem).toBeUndefined();
    // Read on demand (the ingress), never by loadConfig: other processes neither hold the key nor need the file.
    expect(readMerchantPrivateKeyPem(downloading)).toContain("BEGIN PRIVATE KEY");
    expect(readMerchantPrivateKeyPem(loadConfig(valid))).toBeUndefined();
    expect(downloading.WECHATPAY_API_BASE_URL).toBe("https://api.mch.weixin.qq.com");
    expect(downloading.WECHATPAY_CERT_REFRESH_INTERVAL_SECONDS).toBe(3_600);
    const missingKey = loadConfig({
      ...valid,
      WECHATPAY_MERCHANT_SERIAL_NO: "37",
      WECHATPAY_MERCHANT_PRIVATE_KEY_PATH: join(dir, "no.pem"),
    });
    expect(() => readMerchantPrivateKeyPem(missingKey)).toThrow(
      `WECHATPAY_MERCHANT_PRIVATE_KEY_PATH file ${join(dir, "no.pem")} does not exist`,
    );
    // Only commas and blanks name no certificate: not a key source.
    for (const blank of [",", " , "]) {
      expect(errorOf({ ...noPublicKey, WECHATPAY_PLATFORM_CERT_PATHS: blank }, ingress)).toMatch(
        /^WECHATPAY_PUBLIC_KEY_ID is required unless/,
      );
    }
    const cert = join(dir, "only-cert.pem");
    writeFileSync(cert, "CERT");
    expect(
      loadConfig({ ...noPublicKey, WECHATPAY_PLATFORM_CERT_PATHS: cert }, ingress).platformCertificatePems,
    ).toEqual(["CERT"]);
  });

  it("lets a worker-only or dashboard host go without any APIv3 verification key (they never verify one)", () => {
    const { WECHATPAY_PUBLIC_KEY_ID: _id, WECHATPAY_PUBLIC_KEY_PATH: _path, ...noPublicKey } = valid;
    const worker = loadConfig(noPublicKey);
    expect(worker.publicKeyPem).toBeUndefined();
    expect(worker.platformCertificatePems).toEqual([]);
    // Half a pair is still refused: it is a mistake wherever it is made.
    expect(errorOf({ ...noPublicKey, WECHATPAY_PUBLIC_KEY_ID: valid.WECHATPAY_PUBLIC_KEY_ID })).toBe(
      "WECHATPAY_PUBLIC_KEY_PATH is required when WECHATPAY_PUBLIC_KEY_ID is set",
    );
  });

  it("reads DASHBOARD_TRUST_PROXY as off, any peer (true) or the proxies' addresses, and refuses anything else", () => {
    expect(loadConfig(valid).DASHBOARD_TRUST_PROXY).toBe(false);
    expect(loadConfig({ ...valid, DASHBOARD_TRUST_PROXY: "false" }).DASHBOARD_TRUST_PROXY).toBe(false);
    expect(loadConfig({ ...valid, DASHBOARD_TRUST_PROXY: "true" }).DASHBOARD_TRUST_PROXY).toBe(true);
    expect(
      loadConfig({ ...valid, DASHBOARD_TRUST_PROXY: " 10.0.0.2, 172.16.0.0/12,::1 , fd00::/8," }).DASHBOARD_TRUST_PROXY,
    ).toEqual(["10.0.0.2", "172.16.0.0/12", "::1", "fd00::/8"]);
    for (const value of [
      "yes",
      "TRUE",
      "1",
      ",",
      "10.0.0",
      "10.0.0.2/33",
      "10.0.0.0/",
      "10.0.0.0/8/8",
      "::/129",
      "fe80::1%eth0",
      "nginx",
    ]) {
      expect(errorOf({ ...valid, DASHBOARD_TRUST_PROXY: value }), value).toBe(
        "DASHBOARD_TRUST_PROXY must be true, false or the reverse proxies' addresses (IP or CIDR, comma-separated)",
      );
    }
  });

  it("refuses a /0 range in DASHBOARD_TRUST_PROXY, which Fastify's proxy-addr throws on", () => {
    // It passed, and buildApp threw proxy-addr's TypeError ('invalid range on address'): a stack trace and exit 1.
    // Had it loaded, every peer would have been a proxy, the client its own leftmost X-Forwarded-For.
    for (const value of ["0.0.0.0/0", "10.0.0.2, ::/0", "10.0.0.0/00"]) {
      expect(errorOf({ ...valid, DASHBOARD_TRUST_PROXY: value }), value).toBe(
        "DASHBOARD_TRUST_PROXY must not hold a /0 range: it would take every peer for a proxy, and a client could " +
          "pick its own address; list the proxies' addresses (or true for one hop from any peer)",
      );
    }
    expect(loadConfig({ ...valid, DASHBOARD_TRUST_PROXY: "10.0.0.0/1, ::/1" }).DASHBOARD_TRUST_PROXY).toEqual([
      "10.0.0.0/1",
      "::/1",
    ]);
  });

  it("reads platform certificate files from a comma-separated list", () => {
    const cert = join(dir, "cert.pem");
    writeFileSync(cert, "CERT");
    expect(loadConfig({ ...valid, WECHATPAY_PLATFORM_CERT_PATHS: `${cert}, ${cert}` }).platformCertificatePems).toEqual(
      ["CERT", "CERT"],
    );
  });
});

describe("readEnvironment", () => {
  it("reads .env underneath the real environment", () => {
    const cwd = mkdtempSync(join(tmpdir(), "wpn-env-"));
    writeFileSync(join(cwd, ".env"), "WPN_TEST_ONLY_IN_FILE=file\nPATH=from-file\n");
    const env = readEnvironment(cwd);
    expect(env.WPN_TEST_ONLY_IN_FILE).toBe("file");
    expect(env.PATH).not.toBe("from-file");
  });

  it("refuses a .env it cannot read with a ConfigError naming the file and the cause", () => {
    // A directory (a bind mount of a missing file makes one) threw EISDIR out of readFileSync: a stack trace.
    const cwd = mkdtempSync(join(tmpdir(), "wpn-env-"));
    mkdirSync(join(cwd, ".env"));
    expect(() => readEnvironment(cwd)).toThrow(
      new ConfigError(".env", `.env file ${join(cwd, ".env")} cannot be read (EISDIR)`),
    );
  });
});

describe(".env.example", () => {
  it("documents every variable the schema reads, and nothing else", () => {
    const text = readFileSync(join(import.meta.dirname, "../../../.env.example"), "utf8");
    const documented = [...text.matchAll(/^#? ?([A-Z][A-Z0-9_]+)=/gm)].map((m) => m[1]);
    expect([...new Set(documented)].sort()).toEqual([...ENV_NAMES].sort());
  });

  it("any NODE_ENV is accepted: nothing here depends on it (libraries read it)", () => {
    expect(() => loadConfig({ ...valid, NODE_ENV: "staging" })).not.toThrow();
  });
});
