#!/usr/bin/env node
// `npx wechatpay-sim …`: runs src/cli.ts through tsx in this process (no build step, like the rest of the repo).
import { register } from "tsx/esm/api";

register();
const { runCli } = await import("../src/cli.ts");
await runCli(process.argv.slice(2));
