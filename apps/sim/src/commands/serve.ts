import { readFileSync } from "node:fs";
import { loadCertificate, loadPublicKey } from "@wpn/wechatpay";
import { intFlag, requireKeys, stringFlag } from "../args.ts";
import { startFakeApi } from "../fake-api.ts";
import { EXIT, type Io, println, UsageError } from "../io.ts";
import { type Command, HELP_EXIT_CODES } from "./command.ts";

function merchantKey(path: string | undefined) {
  if (path === undefined) return undefined;
  let pem: string;
  try {
    pem = readFileSync(path, "utf8");
  } catch (err) {
    throw new UsageError(`--merchant-key ${path}: ${(err as Error).message}`, "--merchant-key");
  }
  try {
    return pem.includes("BEGIN CERTIFICATE") ? loadCertificate(pem).publicKey : loadPublicKey(pem);
  } catch (err) {
    throw new UsageError(`--merchant-key ${path}: ${(err as Error).message}`, "--merchant-key");
  }
}

export const serveCommand: Command = {
  name: "serve",
  summary: "run a fake WeChat Pay API (certificates, order and refund queries) on a local port",
  options: {
    keys: { type: "string" },
    port: { type: "string" },
    host: { type: "string" },
    "merchant-key": { type: "string" },
  },
  maxPositionals: 0,
  help: `wechatpay-sim serve — a fake WeChat Pay merchant API for what a notification processor calls

Endpoints (all GET, JSON, every response signed with Wechatpay-Timestamp/Nonce/Serial/Signature):
  /v3/certificates                                   the platform certificate from the keys folder, encrypted
                                                     as WeChat does (AEAD_AES_256_GCM, APIv3 key, AAD "certificate")
  /v3/pay/transactions/out-trade-no/{no}?mchid=ID    order query: trade_state SUCCESS / REFUND / CLOSED
  /v3/pay/transactions/id/{transaction_id}?mchid=ID  order query by WeChat's transaction id
  /v3/refund/domestic/refunds/{out_refund_no}        refund query
Data comes from the journal of the keys folder: what pay, refund, close and load have sent (re-read on every
request). Unknown orders answer 404 ORDER_NOT_EXIST, unknown refunds 404 RESOURCE_NOT_EXISTS.
Responses are signed with the platform certificate's key, or with the public key when the request names it
in a Wechatpay-Serial header. Requests need an Authorization header (WECHATPAY2-SHA256-RSA2048 …) for the
simulated mchid; its signature is only checked when --merchant-key is given.

Usage: wechatpay-sim serve [--port N] [--host H] [--keys DIR] [--merchant-key PEM]

Options:
  --port N            port to listen on (default 0: any free port; the URL is printed)
  --host H            interface (default 127.0.0.1)
  --keys DIR          keys folder (default $WECHATPAY_SIM_KEYS or .dev/keys)
  --merchant-key PEM  the merchant API certificate or public key: verify request signatures with it

Prints "listening on URL" on stdout, one line per request on stderr; stops on Ctrl-C (exit 0).

Example:
  npm run sim -- serve --port 3100

${HELP_EXIT_CODES}`,
  async run({ values }, io: Io) {
    const keys = requireKeys(values, io);
    const port = intFlag(values, "port", { min: 0, max: 65_535, what: "a port number" }) ?? 0;
    const host = stringFlag(values, "host") ?? "127.0.0.1";
    const merchantPublicKey = merchantKey(stringFlag(values, "merchant-key"));
    let api: Awaited<ReturnType<typeof startFakeApi>>;
    try {
      api = await startFakeApi({
        keys,
        host,
        port,
        ...(merchantPublicKey ? { merchantPublicKey } : {}),
        log: (line) => println(io.stderr, line),
      });
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === "EADDRINUSE" || code === "EACCES" || code === "EADDRNOTAVAIL") {
        throw new UsageError(`--port ${port} / --host ${host}: ${(err as Error).message}`, "--port");
      }
      throw err;
    }
    println(io.stdout, `wechatpay-sim fake WeChat Pay API listening on ${api.url}`);
    println(
      io.stdout,
      `  certificates: GET ${api.url}/v3/certificates (mchid ${keys.mchid}, serial ${keys.certificateSerial})`,
    );
    if (io.signal.aborted) {
      await api.close();
      return EXIT.OK;
    }
    await new Promise<void>((resolve) => io.signal.addEventListener("abort", () => resolve(), { once: true }));
    await api.close();
    println(io.stderr, "stopped");
    return EXIT.OK;
  },
};
