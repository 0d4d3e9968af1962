import { createTestDatabase, type TestDatabase } from "@wpn/testing";
import pg from "pg";
import { afterAll, beforeAll, expect, it, vi } from "vitest";
import type { LoadReport } from "../src/load/report.ts";
import { applyPayment } from "./support/apply-payment.ts";
import { runSim, tempKeys } from "./support/cli.ts";
import { type Receiver, startReceiver } from "./support/receiver.ts";

/**
 * `load` proves exactly-once across restarts during its run — PostgreSQL's among them. Its database check used the
 * connection it had seeded the orders with minutes before; a PostgreSQL restarted meanwhile had closed it, and the
 * check died on it: "unexpected error: Client has encountered a connection error and is not queryable", exit 4, no
 * report (measured against the real system, PostgreSQL stopped 20 s mid-run). Here the server ends that connection
 * (pg_terminate_backend, as a restart does) once the deliveries have begun.
 */
let database: TestDatabase;
let receiver: Receiver;
const temp = tempKeys();
/** The backend pids of the simulator's own connections, as they connect. */
const simBackends: number[] = [];
let terminated = false;

beforeAll(async () => {
  database = await createTestDatabase("sim_load_db_restart");
  const connect = pg.Client.prototype.connect as (this: pg.Client, callback?: (error: Error) => void) => unknown;
  const record = (client: pg.Client) => {
    const self = client as pg.Client & { processID: number; connectionParameters: { application_name?: string } };
    if (self.connectionParameters.application_name === "wechatpay-sim") simBackends.push(self.processID);
  };
  // pg.Pool connects its clients with a callback, the simulator with the promise form.
  vi.spyOn(pg.Client.prototype, "connect").mockImplementation(function (
    this: pg.Client,
    callback?: (error: Error) => void,
  ) {
    if (callback !== undefined) return connect.call(this, callback);
    return (connect.call(this) as Promise<void>).then(() => record(this));
  } as typeof pg.Client.prototype.connect);
  receiver = await startReceiver({
    keys: temp.keys,
    answer: async (r, _all, correct) => {
      if (r.event?.kind !== "transaction") return correct;
      if (!terminated) {
        terminated = true;
        await database.db.pool.query("SELECT pg_terminate_backend(pid) FROM unnest($1::int[]) AS pid", [simBackends]);
      }
      await applyPayment(database.db.pool, r.event.transaction.mchid ?? "(none)", r.event.transaction.out_trade_no);
      return correct;
    },
  });
});
afterAll(async () => {
  vi.restoreAllMocks();
  await receiver?.close();
  await database?.drop();
  temp.cleanup();
});

it("load's database check reconnects when the seeding connection was ended during the run", async () => {
  const r = await runSim([
    "load",
    "--keys",
    temp.keys.dir,
    "--url",
    receiver.v3,
    "--count",
    "10",
    "--concurrency",
    "1",
    "--database-url",
    database.url,
    "--settle-seconds",
    "2",
    "--json",
  ]);
  expect(terminated).toBe(true);
  expect(r.stderr).not.toContain("unexpected error");
  expect(r.code).toBe(0);
  const report = JSON.parse(r.stdout) as LoadReport;
  expect(report.database).toMatchObject({ expectedPaid: 10, paid: 10, ok: true });
});
