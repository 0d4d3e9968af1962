import { parseArgs } from "node:util";

/**
 * The argument handling of a script that takes none (`npm start`, `npm run db:migrate`): `--help`/`-h` prints `help`
 * and exits 0, anything else prints `<refusalCode>: <why>` and the usage and exits 2 — before any setting is read or
 * connection made, so `--help` never starts or migrates anything (both once ignored their arguments and did).
 */
export function takeNoArguments(usage: string, help: string, refusalCode: string): void {
  try {
    const { values } = parseArgs({ options: { help: { type: "boolean", short: "h" } } });
    if (values.help) {
      console.log(help);
      process.exit(0);
    }
  } catch (error) {
    console.error(`${refusalCode}: ${(error as Error).message}\n${usage}`);
    process.exit(2);
  }
}
