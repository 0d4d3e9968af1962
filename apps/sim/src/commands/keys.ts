import { isAbsolute, resolve } from "node:path";
import { boolFlag, mchidFlag, stringFlag } from "../args.ts";
import { EXIT, type Io, println, UsageError } from "../io.ts";
import {
  DEFAULT_APPID,
  DEFAULT_KEYS_DIR,
  DEFAULT_MCHID,
  formatEnv,
  generateSimKeys,
  hasSimKeys,
  KEY_FILES,
  KEYS_DIR_ENV,
  SimKeysError,
} from "../keys.ts";
import { type Command, HELP_EXIT_CODES } from "./command.ts";

export const keysCommand: Command = {
  name: "keys",
  summary: "generate a simulated WeChat Pay account (keys, certificate) and print the ingress environment",
  options: {
    out: { type: "string" },
    mchid: { type: "string" },
    appid: { type: "string" },
    force: { type: "boolean" },
    json: { type: "boolean" },
  },
  maxPositionals: 0,
  help: `wechatpay-sim keys — create the key material of a simulated WeChat Pay merchant account

Generates two RSA-2048 key pairs (the WeChat Pay public key with a PUB_KEY_ID_… id, and a self-signed
platform certificate with a 40-hex-digit serial), a 32-character APIv3 key and a 32-character APIv2 key,
writes them to a folder and prints the environment variables the ingress needs.

Files written to DIR:
  ${KEY_FILES.publicKey.padEnd(34)} WECHATPAY_PUBLIC_KEY_PATH
  ${KEY_FILES.certificate.padEnd(34)} WECHATPAY_PLATFORM_CERT_PATHS
  ${KEY_FILES.publicKeyPrivate.padEnd(34)} simulator only (signs as PUB_KEY_ID_…)
  ${KEY_FILES.certificatePrivate.padEnd(34)} simulator only (signs as the certificate serial)
  ${KEY_FILES.env.padEnd(34)} the variables below plus the simulator's own (WECHATPAY_SIM_*);
  ${"".padEnd(34)} works with \`node --env-file DIR/env\` and \`set -a; . DIR/env\`
Other commands read the folder with --keys DIR (and append to DIR/${KEY_FILES.journal}).

Usage: wechatpay-sim keys [--out DIR] [--mchid ID] [--appid ID] [--force] [--json]

Options:
  --out DIR      folder to write (default $${KEYS_DIR_ENV} or ${DEFAULT_KEYS_DIR}); created if missing
  --mchid ID     merchant number (default ${DEFAULT_MCHID})
  --appid ID     app id (default ${DEFAULT_APPID})
  --force        overwrite keys already in DIR (a running ingress keeps the old ones until restarted)
  --json         print {"dir", "env"} as JSON instead of KEY=value lines

Examples:
  npm run sim -- keys --out .dev/keys
  npx wechatpay-sim keys --out /tmp/wx --mchid 1230000109 > /tmp/wx.env

${HELP_EXIT_CODES}`,
  async run({ values }, io: Io) {
    const given = stringFlag(values, "out") ?? io.env[KEYS_DIR_ENV] ?? DEFAULT_KEYS_DIR;
    const dir = isAbsolute(given) ? given : resolve(io.cwd, given);
    if (hasSimKeys(dir) && !boolFlag(values, "force")) {
      throw new UsageError(`--out ${dir} already holds simulator keys; pass --force to replace them`, "--out");
    }
    const mchid = mchidFlag(values);
    const appid = stringFlag(values, "appid");
    let keys: ReturnType<typeof generateSimKeys>;
    try {
      keys = generateSimKeys(dir, { ...(mchid ? { mchid } : {}), ...(appid ? { appid } : {}) });
    } catch (err) {
      if (err instanceof SimKeysError) throw new UsageError(err.message);
      const code = (err as NodeJS.ErrnoException).code;
      if (code === "EACCES" || code === "ENOTDIR" || code === "EEXIST" || code === "EROFS") {
        throw new UsageError(`--out ${dir}: ${(err as Error).message}`, "--out");
      }
      throw err;
    }
    if (boolFlag(values, "json")) {
      println(
        io.stdout,
        JSON.stringify(
          {
            dir: keys.dir,
            env: keys.env,
            publicKeyId: keys.publicKeyId,
            certificateSerial: keys.certificateSerial,
            certificateNotAfter: keys.certificateNotAfter.toISOString(),
          },
          null,
          2,
        ),
      );
      return EXIT.OK;
    }
    println(io.stderr, `Wrote a simulated WeChat Pay account to ${keys.dir}`);
    println(io.stderr, `  public key id       ${keys.publicKeyId}`);
    println(
      io.stderr,
      `  certificate serial  ${keys.certificateSerial} (valid until ${keys.certificateNotAfter.toISOString()})`,
    );
    println(io.stderr, `Environment for the ingress (also in ${keys.dir}/${KEY_FILES.env}):`);
    println(io.stdout, formatEnv(keys.env));
    return EXIT.OK;
  },
};
