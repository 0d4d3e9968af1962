import { once } from "node:events";
import { createServer } from "node:net";
import { listenFailure } from "@wpn/config";
import { describe, expect, it } from "vitest";

/** The error Node gives a server listening at `host`:`port`. */
async function listenError(host: string, port: number): Promise<unknown> {
  const server = createServer();
  server.listen(port, host);
  const [error] = await once(server, "error");
  return error;
}

describe("listenFailure (an app that cannot listen: LISTEN_FAILED, exit 78)", () => {
  it("a port in use: the port setting, EADDRINUSE", async () => {
    const holder = createServer().listen(0, "127.0.0.1");
    await once(holder, "listening");
    const port = (holder.address() as { port: number }).port;
    try {
      const failure = listenFailure(await listenError("127.0.0.1", port), {
        host: "127.0.0.1",
        port,
        portSetting: "PORT",
      });
      expect(failure).toEqual({
        fields: { code: "LISTEN_FAILED", address: `127.0.0.1:${port}`, setting: "PORT", cause: "EADDRINUSE" },
        message: `cannot listen on 127.0.0.1:${port}: another process listens there (EADDRINUSE); stop it, or change PORT`,
      });
    } finally {
      holder.close();
    }
  });

  it("a HOST that does not resolve, or is no address of this machine: HOST", async () => {
    const where = { host: "wpn-no-such-host.invalid", port: 3000, portSetting: "PORT" };
    const unresolved = listenFailure(await listenError(where.host, 3000), where);
    // ENOTFOUND; EAI_AGAIN where no name server answers.
    expect(unresolved?.fields).toMatchObject({ setting: "HOST", address: "wpn-no-such-host.invalid:3000" });
    expect(unresolved?.fields.cause).toMatch(/^(ENOTFOUND|EAI_AGAIN)$/);
    expect(unresolved?.message).toMatch(
      /^cannot listen on wpn-no-such-host\.invalid:3000: HOST wpn-no-such-host\.invalid does not resolve \((ENOTFOUND|EAI_AGAIN)\); change HOST to an address of this machine \(127\.0\.0\.1: this machine only; 0\.0\.0\.0: every interface\)$/,
    );
    const foreign = listenFailure(await listenError("192.0.2.1", 0), { ...where, host: "192.0.2.1", port: 0 });
    expect(foreign).toEqual({
      fields: { code: "LISTEN_FAILED", address: "192.0.2.1:0", setting: "HOST", cause: "EADDRNOTAVAIL" },
      message:
        "cannot listen on 192.0.2.1:0: 192.0.2.1 is not an address of this machine (EADDRNOTAVAIL); change HOST to an address of this machine (127.0.0.1: this machine only; 0.0.0.0: every interface)",
    });
  });

  it("a port below 1024 without the privilege (EACCES); an IPv6 address in brackets", () => {
    // Not reproducible as root: the error as Node raises it.
    const denied = Object.assign(new Error("listen EACCES: permission denied ::1:80"), {
      code: "EACCES",
      syscall: "listen",
    });
    expect(listenFailure(denied, { host: "::1", port: 80, portSetting: "DASHBOARD_PORT" })).toEqual({
      fields: { code: "LISTEN_FAILED", address: "[::1]:80", setting: "DASHBOARD_PORT", cause: "EACCES" },
      message:
        "cannot listen on [::1]:80: not permitted (EACCES; ports below 1024 need privileges); change DASHBOARD_PORT to 1024 or above",
    });
  });

  it("is undefined for an error that is not about listening (it stays a crash, with its stack)", () => {
    const where = { host: "127.0.0.1", port: 3000, portSetting: "PORT" };
    expect(listenFailure(new Error("plugin failed"), where)).toBeUndefined();
    const refused = Object.assign(new Error("connect ECONNREFUSED"), { code: "ECONNREFUSED", syscall: "connect" });
    expect(listenFailure(refused, where)).toBeUndefined();
  });
});
