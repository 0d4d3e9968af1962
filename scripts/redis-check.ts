// `npm start`'s check that Redis takes REDIS_URL's login before any app starts. A server that answers TCP but refuses
// the login (NOAUTH: a password it wants and the URL lacks; WRONGPASS: a wrong user or password) started the apps
// anyway, each then logging NOAUTH every few seconds for ever instead of one line saying which setting to fix.
import { createRedisConnection } from "@wpn/queue";

/** How long the check waits for Redis's PONG (ms): a server that answered TCP answers PING at once. */
const PING_TIMEOUT_MS = 5_000;

/** Where a URL points, for messages: host and port only — never its user or password. */
const whereOf = (url: string) => new URL(url).host || "127.0.0.1:6379";

/** Why REDIS_URL cannot be used (one line naming the setting), or undefined when Redis answered PING with PONG. */
export async function redisProblem(url: string): Promise<string | undefined> {
  // No reconnecting and no offline queue: one attempt, its error is the answer.
  const redis = createRedisConnection(url, "admin", {
    retryStrategy: () => null,
    maxRetriesPerRequest: 0,
    connectTimeout: PING_TIMEOUT_MS,
    lazyConnect: true,
  });
  // A refused login (at AUTH, or at the ready check's INFO) comes as an 'error' event, and the connect then fails only
  // with "Connection is closed.": the event's error is the one that says why.
  let refused: Error | undefined;
  redis.on("error", (error: Error) => {
    refused ??= error;
  });
  let timer: NodeJS.Timeout | undefined;
  try {
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`no answer within ${PING_TIMEOUT_MS / 1_000} s`)), PING_TIMEOUT_MS);
    });
    await Promise.race([redis.connect().then(() => redis.ping()), timeout]);
    return undefined;
  } catch (error) {
    const cause = refused ?? error;
    const message = cause instanceof Error ? cause.message : String(cause);
    if (/^(NOAUTH|WRONGPASS)\b/.test(message) || /invalid (username-)?password/i.test(message)) {
      return `Redis at ${whereOf(url)} refused REDIS_URL's login (${message.split(" ")[0]}): set the user and password it expects in REDIS_URL (redis://user:password@host:port).`;
    }
    return `Redis at ${whereOf(url)} did not answer PING (${message}); start it or fix REDIS_URL.`;
  } finally {
    clearTimeout(timer);
    redis.disconnect();
  }
}
