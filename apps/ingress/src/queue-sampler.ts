import type { Queue } from "bullmq";
import type { Logger } from "pino";
import type { IngressMetrics } from "./metrics.ts";
import { TIMED_OUT, within } from "./within.ts";

export interface QueueSnapshot {
  /** Last sampled waiting count; undefined until a sample succeeded. */
  waiting: number | undefined;
  /** INGRESS_QUEUE_WAITING_CEILING. */
  ceiling: number;
  /** waiting > ceiling. The ingress keeps accepting: WeChat's resends would only add load. */
  backpressure: boolean;
  /**
   * The last sample succeeded and Redis accepts writes (what /health/ready calls "Redis reachable"); false again from
   * the moment the connection closes until a sample on the new one succeeds.
   */
  redisUp: boolean;
  /** ms since the epoch of the last successful sample. */
  lastOkAt: number | undefined;
  /**
   * Redis's `maxmemory-policy` as last sampled, with " (no maxmemory)" when no limit is set (nothing is ever evicted);
   * "unknown" when INFO does not say; undefined before the first sample.
   */
  eviction: string | undefined;
  /**
   * Redis may evict keys that have no TTL — BullMQ's jobs (an `allkeys-*` policy with `maxmemory` set): a 2xx would
   * no longer mean "kept", so /health/ready answers 503 and the intake refuses notifications (503). The `volatile-*`
   * policies evict only keys with a TTL: the dedupe receipts and BullMQ's job locks, whose loss costs a second job for
   * a redelivery or a second run of a job (the worker answers both as duplicates), never a payment; they are
   * reported, not refused.
   */
  evictsJobs: boolean;
  /**
   * Whether Redis keeps an AOF (`INFO persistence` `aof_enabled`) as last sampled; undefined before a sample read it or
   * when INFO does not say. Without one, a restart or crash of Redis loses every job and receipt it holds — of
   * notifications already acknowledged, which WeChat does not resend. Reported (logged, `wpn_ingress_redis_aof_enabled`),
   * not refused: that loss needs a restart, not the normal run an evicting policy loses jobs in, and a Redis without
   * persistence is what the test suite runs (a cache-only Redis may be a deliberate choice too).
   */
  aof: boolean | undefined;
  /**
   * The last ROLE answered was a replica's (false while it was a master's, or ROLE may not be asked). A replica that
   * takes writes (`replica-read-only no`) keeps them only until it next syncs with its primary, which its own clients'
   * writes never reach: the intake refuses notifications meanwhile (a read-only one refuses them itself, READONLY).
   */
  replica: boolean;
  /**
   * A sample has read both the eviction policy and the ROLE (or found that ROLE may not be asked) on the current
   * connection; until then `unkeptBecause` refuses. False at start (`evictsJobs` and `replica` are only their initial
   * false, not what Redis said) and again from the moment the connection closes: the connection made next may reach
   * another server (a Redis restarted with another configuration, an address now leading to a replica), and
   * `eviction`, `evictsJobs` and `replica` then tell what the previous one's last sample read, until a sample sent
   * on the new connection has read it (taken as soon as it is ready, not at the next interval).
   */
  checked: boolean;
  /**
   * What the last write probe met (see QueueSampler): "ok"; Redis's own error code when it refused the write
   * (`READONLY`, `OOM`, `MISCONF`, `NOREPLICAS`, `NOPERM`, …: the reply's first word); `TIMEOUT` when it was not
   * answered within the enqueue bound; `NO_CONNECTION` when it failed without a reply (the connection is down).
   * Undefined before the first probe settled. Anything but "ok" makes the ingress not ready.
   */
  write: string | undefined;
}

/** What `INFO memory` says about eviction. */
export interface EvictionSetting {
  policy: string;
  /** `maxmemory`, bytes; 0 = no limit, so nothing is evicted whatever the policy. */
  maxmemory: number;
}

/** Reads `maxmemory` and `maxmemory_policy` out of `INFO memory`'s text; undefined when either is missing. */
export function parseEvictionSetting(info: string): EvictionSetting | undefined {
  const policy = /^maxmemory_policy:(\S+)/m.exec(info)?.[1];
  const maxmemory = /^maxmemory:(\d+)/m.exec(info)?.[1];
  if (policy === undefined || maxmemory === undefined) return undefined;
  return { policy, maxmemory: Number(maxmemory) };
}

/** Reads `aof_enabled` out of `INFO persistence`'s text; undefined when it is missing. */
export function parseAofEnabled(info: string): boolean | undefined {
  const enabled = /^aof_enabled:(\d+)/m.exec(info)?.[1];
  return enabled === undefined ? undefined : enabled !== "0";
}

/**
 * The code a refused write probe gets: Redis's error code, the first word of its error reply (READONLY, OOM, …), or
 * NO_CONNECTION for a failure without a reply (ioredis's "Connection is closed.", "Stream isn't writeable …").
 */
export function writeRefusal(error: unknown): string {
  const replied = error instanceof Error && error.name === "ReplyError";
  return (replied ? /^[A-Z][A-Z0-9_]*(?=\s|$)/.exec(error.message)?.[0] : undefined) ?? "NO_CONNECTION";
}

/** A sample unanswered for this many intervals means Redis is down, although no error has come. */
const UNANSWERED_AFTER_INTERVALS = 3;

/**
 * Samples the parse queue's waiting count every `intervalMs` in the background, so that neither requests
 * nor health probes ever cost a Redis round trip of their own. One sample in flight at a time: a slow
 * Redis cannot pile up samples.
 *
 * A connection can stop answering without failing: after a network partition or a failover that sends no
 * reset, the socket stays open and "ready", every command waits, and the kernel gives up only after its
 * retransmissions (~15 min). So a sample still unanswered after 3 intervals marks Redis down (readiness
 * 503, so the load balancer sends WeChat's resends to another ingress), and one unanswered after
 * `reopenAfterMs` calls `reopen` (the app reconnects the producer connection, failing what waits on it:
 * those requests already got their 503, and a resend of a job Redis did keep finds its receipt).
 *
 * A Redis that answers but is a replica (a failover that demoted it and left its clients connected) refuses
 * every enqueue with READONLY: each sample asks its ROLE too, and a replica counts as down. A connection that
 * still answers as a replica after `reopenAfterMs` is reopened (then again each `reopenAfterMs`): once not ready,
 * the ingress gets no traffic, so no enqueue meets READONLY and reconnects it. (The write probe below does, at most
 * once a second — connection.ts —; not on a replica that takes writes, `replica-read-only no`.) ROLE is an admin
 * command: a Redis user without it (an ACL without @admin, which BullMQ does not need) skips that check, logged once.
 *
 * Each sample also reads Redis's eviction policy (`INFO memory`): BullMQ needs `noeviction`, and a Redis that may
 * evict jobs makes the ingress not ready and refuse notifications (`evictsJobs`), logged (code
 * `REDIS_EVICTION_POLICY`) whenever the policy changes. And whether Redis keeps an AOF (`INFO persistence`): one that
 * does not loses what it holds when it restarts, acknowledged notifications included; logged (code `REDIS_NO_AOF`)
 * whenever a sample finds it off after finding it on or not at all, and counted, but not refused (`aof`).
 *
 * Reads alone do not tell whether the ingress can keep a notification: a Redis past `maxmemory` under noeviction
 * (OOM), a replica (READONLY, which ROLE shows only to a user allowed to ask it), a failed RDB save (MISCONF),
 * `min-replicas-to-write` unmet (NOREPLICAS) or a `CLIENT PAUSE … WRITE` answers every read and refuses or holds
 * every enqueue, and a ready ingress would keep getting notifications only to answer them all 503. So each sample
 * also writes, through the producer connection its enqueues use: `connection.write()`, a SET with a short expiry
 * under the queue prefix. Anything but an answer "OK" within `writeTimeoutMs` (the enqueue bound: a write slower
 * than that would have been answered QUEUE_TIMEOUT) makes the ingress not ready (`write`, logged with code
 * `REDIS_WRITE_REFUSED`); the next probe that passes makes it ready again. The probe costs one SET per interval
 * whatever the traffic, and nothing per request. Readiness is not learned from failed enqueue batches instead: those
 * requests already have their 503, a process taken out of the balancer gets no more batches to learn its recovery
 * from, and a batch short of its replicas (QUEUE_NOT_REPLICATED) must not take a process out (README, Durability).
 * One probe at a time: a write Redis holds is not joined by more, and its answer, however late, is recorded.
 *
 * What a sample read holds only for the connection it was read on. Once the connection closes (ioredis 'close': a
 * restart, a failover, a reopen) the next one may reach another server, or the same one restarted with another
 * configuration, so the snapshot stops vouching for Redis (`checked` and `redisUp` are reset: refused, not ready) and
 * a sample is taken as soon as the connection is ready again ('ready'), instead of trusting the old one for up to an
 * interval. Until it is answered (milliseconds after a normal restart) notifications are refused. A sample sent on the
 * previous connection records nothing when answered: ioredis resends unanswered commands on the new connection, so
 * one sample could join one server's policy to another's ROLE. The write probe's outcome is kept (`write`): it says
 * what the last write met wherever it went (a READONLY is answered just before the reconnect it causes), and the
 * ingress is not ready anyway until the new connection's sample succeeds.
 */
export class QueueSampler {
  #timer: NodeJS.Timeout | undefined;
  #current: Promise<void> | undefined;
  /** `clock()` when the sample in flight was sent. */
  #sentAt = 0;
  #reopened = false;
  #failuresLogged = 0;
  #roleRefusedLogged = false;
  /** What the previous sample read of the AOF (`aof`), "unread" before the first: a change is logged, not each sample. */
  #aofRead: boolean | undefined | "unread" = "unread";
  /** A write probe is sent and not yet answered. */
  #probing = false;
  /** Counts the connection's closes: what a sample sent before the last one read may be about another server. */
  #connection = 0;
  /** A refused write was logged and its recovery is yet to be. */
  #writeRefusalLogged = false;
  /** `clock()` since when samples have found a replica (or since its last reopen); undefined while on a master. */
  #replicaSince: number | undefined;
  readonly #snapshot: QueueSnapshot;

  constructor(
    private readonly queue: Queue,
    ceiling: number,
    private readonly metrics: IngressMetrics,
    private readonly logger: Logger,
    private readonly intervalMs = 1_000,
    private readonly clock: () => number = Date.now,
    /**
     * The producer connection: reopened when it stalls, asked for its ROLE and `INFO memory` and written to with each
     * sample.
     */
    private readonly connection: {
      reopenAfterMs: number;
      reopen(): void;
      role(): Promise<unknown>;
      memoryInfo(): Promise<string>;
      /** `INFO persistence`'s text. */
      persistenceInfo(): Promise<string>;
      /** The write probe: a write like the enqueues', cheap and leaving nothing behind (an expiring key). */
      write(): Promise<unknown>;
      /** A write probe unanswered this long counts as refused (`TIMEOUT`), ms. */
      writeTimeoutMs: number;
      /** ioredis's connection events: 'close' each time it is lost, 'ready' each time it can take commands again. */
      events: {
        on(event: "close" | "ready", listener: () => void): unknown;
        off(event: "close" | "ready", listener: () => void): unknown;
      };
    },
  ) {
    this.#snapshot = {
      waiting: undefined,
      ceiling,
      backpressure: false,
      redisUp: false,
      lastOkAt: undefined,
      eviction: undefined,
      evictsJobs: false,
      aof: undefined,
      replica: false,
      checked: false,
      write: undefined,
    };
    metrics.queueWaiting.set(-1);
    metrics.queueWaitingCeiling.set(ceiling);
    metrics.backpressure.set(0);
    metrics.redisUp.set(0);
    metrics.redisEvictsJobs.set(0);
    metrics.redisAofEnabled.set(-1);
    metrics.redisWritable.set(0);
  }

  get snapshot(): Readonly<QueueSnapshot> {
    return this.#snapshot;
  }

  /**
   * How many times the connection has closed since `start()`. A command sent when it was n and answered when it is
   * no longer n was answered on a later connection (ioredis resent it there), by a server no sample may have vouched
   * for: the enqueue batcher does not acknowledge such a batch. A property read, as `unkeptBecause`.
   */
  get connectionCloses(): number {
    return this.#connection;
  }

  /**
   * Why a job Redis confirms would not be kept, as the last sample found it, or undefined: a replica (`replica`),
   * or a policy that may evict jobs (`evictsJobs`). Read by the intake for every notification: no Redis round trip.
   *
   * Before a sample on the current connection has read the policy and the role (`checked`) it cannot say that a job
   * would be kept, so it refuses too. That covers the start (the first sample is sent when the app is ready and
   * answered a few ms later), a Redis down at start and up later (every sample failed, so nothing was read, until the
   * first one after it is back), and every reconnect (the server reached may not be the one sampled: refused from the
   * close until the sample sent when the connection is ready again is answered). The alternative, not listening until
   * the first sample settled, was not taken: it would still need this for a Redis down at start, and would hold the
   * process's listening (health endpoints included) behind a Redis that hangs at start, where now the process listens
   * at once and answers 503s; readiness is 503 until a sample succeeds anyway, so a balancer sends nothing meanwhile.
   */
  get unkeptBecause(): string | undefined {
    if (!this.#snapshot.checked) {
      // `eviction` is read with the role: set only once a sample has read both, on some connection.
      return this.#snapshot.eviction === undefined
        ? "redis not sampled yet: its eviction policy and role are unknown"
        : "redis reconnected: its eviction policy and role are not sampled yet";
    }
    if (this.#snapshot.replica) return "redis is a replica: what it takes is not kept";
    if (this.#snapshot.evictsJobs) return `redis may evict jobs (maxmemory-policy ${this.#snapshot.eviction})`;
    return undefined;
  }

  start(): void {
    if (this.#timer) return;
    this.connection.events.on("close", this.#connectionClosed);
    this.connection.events.on("ready", this.#connectionReady);
    this.#tick();
    this.#timer = setInterval(() => this.#tick(), this.intervalMs);
    this.#timer.unref();
  }

  stop(): void {
    this.connection.events.off("close", this.#connectionClosed);
    this.connection.events.off("ready", this.#connectionReady);
    clearInterval(this.#timer);
    this.#timer = undefined;
  }

  /**
   * The connection was lost: nothing sampled so far vouches for the server the next one reaches. ioredis emits it on
   * the tick after its status left "ready", long before a reconnect can make it "ready" again (a new socket and its
   * ready check), so no request passes the intake's status check in between.
   */
  readonly #connectionClosed = (): void => {
    this.#connection += 1;
    this.#snapshot.checked = false;
    this.#snapshot.redisUp = false;
    this.metrics.redisUp.set(0);
  };

  /** Connected again: sampled at once (behind a sample in flight, whose answer no longer counts), not at the next tick. */
  readonly #connectionReady = (): void => {
    void this.sample();
  };

  /** Takes a sample that starts after this call (queued behind one in flight, never two at once); never rejects. */
  sample(): Promise<void> {
    const next = (this.#current ?? Promise.resolve()).then(() => this.#sampleOnce());
    const tracked = next.finally(() => {
      if (this.#current === tracked) this.#current = undefined;
    });
    this.#current = tracked;
    return tracked;
  }

  /** The periodic tick: no new sample while one is in flight (a slow Redis cannot pile samples up), but a check on it. */
  #tick(): void {
    if (this.#current === undefined) {
      void this.sample();
      return;
    }
    const waitedMs = this.clock() - this.#sentAt;
    if (waitedMs >= UNANSWERED_AFTER_INTERVALS * this.intervalMs && this.#snapshot.redisUp) {
      this.#markDown(new Error(`no answer from redis for ${waitedMs} ms`));
    }
    if (waitedMs >= this.connection.reopenAfterMs && !this.#reopened) {
      this.#reopened = true;
      this.logger.warn({ code: "REDIS_UNRESPONSIVE", waitedMs }, "redis does not answer: reopening the connection");
      this.connection.reopen();
    }
  }

  #markDown(error: unknown): void {
    this.#snapshot.redisUp = false;
    this.metrics.redisUp.set(0);
    // Once per outage, not once per second. The reason only: a stack would say where in ioredis the connection was
    // found closed, nothing an operator acts on.
    if (this.#failuresLogged === 0) {
      const reason = error instanceof Error ? error.message : String(error);
      this.logger.warn({ code: "REDIS_UNREACHABLE", reason }, "queue sample failed: redis unreachable");
    }
    this.#failuresLogged += 1;
  }

  #reopenIfStillReplica(): void {
    const now = this.clock();
    this.#replicaSince ??= now;
    if (now - this.#replicaSince < this.connection.reopenAfterMs) return;
    this.#replicaSince = now;
    this.logger.warn({ code: "REDIS_REPLICA" }, "redis answers as a replica: reopening the connection");
    this.connection.reopen();
  }

  /** ROLE's first element ("master", "slave", "sentinel"), or "not permitted" when this Redis user may not ask. */
  async #role(): Promise<unknown> {
    try {
      const role = await this.connection.role();
      return Array.isArray(role) ? role[0] : undefined;
    } catch (error) {
      if (!(error instanceof Error) || !/^(NOPERM|ERR unknown command)/.test(error.message)) throw error;
      if (!this.#roleRefusedLogged) {
        this.#roleRefusedLogged = true;
        this.logger.warn(
          { err: error },
          "redis refuses ROLE to this user: a demoted primary is noticed only by failed enqueues",
        );
      }
      return "not permitted";
    }
  }

  /**
   * What the sample's `INFO memory` says about eviction; undefined when it does not tell (a Redis-compatible server
   * that leaves the fields out: not a reason to refuse every notification, said once, not counted as evicting).
   * BullMQ itself reads INFO when it connects: a Redis user without it cannot enqueue at all.
   */
  #recordEviction(setting: EvictionSetting | undefined): void {
    const snapshot = this.#snapshot;
    const limited = setting !== undefined && setting.maxmemory > 0;
    const described = setting === undefined ? "unknown" : limited ? setting.policy : `${setting.policy} (no maxmemory)`;
    const evictsJobs = limited && setting.policy.startsWith("allkeys-");
    const evictsTtlKeys = limited && setting.policy.startsWith("volatile-");
    if (described !== snapshot.eviction) {
      if (setting === undefined) {
        this.logger.warn(
          { code: "REDIS_EVICTION_POLICY" },
          "redis INFO does not tell its eviction policy: not checked",
        );
      } else if (evictsJobs || evictsTtlKeys) {
        this.logger.error(
          { code: "REDIS_EVICTION_POLICY", policy: described, evictsJobs },
          evictsJobs
            ? "redis may evict queued jobs (maxmemory-policy must be noeviction): not ready"
            : "redis may evict dedupe receipts and job locks (maxmemory-policy should be noeviction)",
        );
      }
    }
    snapshot.eviction = described;
    snapshot.evictsJobs = evictsJobs;
    this.metrics.redisEvictsJobs.set(evictsJobs ? 1 : 0);
  }

  /** What the sample's `INFO persistence` says about the AOF: logged when it is found off, or unknown, anew. */
  #recordAof(aof: boolean | undefined): void {
    if (aof !== this.#aofRead) {
      if (aof === undefined) {
        this.logger.warn({ code: "REDIS_NO_AOF" }, "redis INFO does not tell whether it keeps an AOF: not checked");
      } else if (!aof) {
        this.logger.error(
          { code: "REDIS_NO_AOF" },
          "redis keeps no AOF (appendonly no): a restart or crash loses the notifications it holds, acknowledged ones too",
        );
      }
    }
    this.#aofRead = aof;
    this.#snapshot.aof = aof;
    this.metrics.redisAofEnabled.set(aof === undefined ? -1 : aof ? 1 : 0);
  }

  /** Sends the write probe unless one is unanswered; resolves once it is answered or has timed out. Never rejects. */
  async #probeWrite(): Promise<void> {
    if (this.#probing) return;
    this.#probing = true;
    const answered = this.connection.write().then(
      () => this.#recordWrite("ok"),
      (error: unknown) => this.#recordWrite(writeRefusal(error), error),
    );
    void answered.finally(() => {
      this.#probing = false;
    });
    if ((await within(answered, this.connection.writeTimeoutMs)) === TIMED_OUT) this.#recordWrite("TIMEOUT");
  }

  #recordWrite(outcome: string, error?: unknown): void {
    const before = this.#snapshot.write;
    this.#snapshot.write = outcome;
    this.metrics.redisWritable.set(outcome === "ok" ? 1 : 0);
    if (outcome === before) return;
    if (outcome === "ok") {
      if (this.#writeRefusalLogged) this.logger.info("redis takes writes again");
      this.#writeRefusalLogged = false;
    } else if (outcome !== "NO_CONNECTION") {
      // A connection that is down is the sample's own failure, logged by #markDown.
      this.#writeRefusalLogged = true;
      this.logger.warn(
        { code: "REDIS_WRITE_REFUSED", refusal: outcome, err: error },
        "redis does not take this process's writes: not ready",
      );
    }
  }

  async #sampleOnce(): Promise<void> {
    const snapshot = this.#snapshot;
    const connection = this.#connection;
    this.#sentAt = this.clock();
    this.#reopened = false;
    const probed = this.#probeWrite();
    try {
      const [waiting, kind, memory, persistence] = await Promise.all([
        this.queue.getWaitingCount(),
        this.#role(),
        this.connection.memoryInfo(),
        this.connection.persistenceInfo(),
      ]);
      // Sent on a connection since closed: its answers may come from two servers. The sample taken on 'ready' reads
      // the new one.
      if (connection !== this.#connection) return;
      this.#recordEviction(parseEvictionSetting(memory));
      this.#recordAof(parseAofEnabled(persistence));
      snapshot.replica = kind !== "master" && kind !== "not permitted";
      snapshot.checked = true;
      if (snapshot.replica) {
        this.#reopenIfStillReplica();
        throw new Error(`redis is a ${String(kind)}: it refuses writes (READONLY)`);
      }
      this.#replicaSince = undefined;
      snapshot.waiting = waiting;
      snapshot.backpressure = waiting > snapshot.ceiling;
      snapshot.redisUp = true;
      snapshot.lastOkAt = this.clock();
      this.metrics.queueWaiting.set(waiting);
      this.metrics.backpressure.set(snapshot.backpressure ? 1 : 0);
      this.metrics.redisUp.set(1);
      if (this.#failuresLogged > 0) this.logger.info("redis reachable again");
      this.#failuresLogged = 0;
    } catch (error) {
      // A failure on a connection since closed is that close, already recorded (#connectionClosed).
      if (connection === this.#connection) this.#markDown(error);
    }
    await probed;
  }
}
