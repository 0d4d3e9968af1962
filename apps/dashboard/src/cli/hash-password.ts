// Prints a DASHBOARD_USERS password hash. The password is read from stdin — typed without echo on a
// terminal, or piped — never from the command line, where it would land in shell history and `ps`.
//
//   npm run hash-password -w @wpn/dashboard                      → scrypt.16384.8.1.<salt>.<key>
//   npm run hash-password -w @wpn/dashboard -- alice operator    → alice:operator:scrypt.…
//   printf '%s' "$PASSWORD" | npm run -s hash-password -w @wpn/dashboard -- ci viewer
//   npm run hash-password -w @wpn/dashboard -- --help              → the usage (stdout, exit 0)
import { hashPassword } from "../auth/password.ts";
import { ROLES, type Role } from "../auth/users.ts";

const USAGE = "usage: hash-password [<name> <viewer|operator>]  (password on stdin)";

function usage(message: string): never {
  process.stderr.write(`${message}\n${USAGE}\n`);
  // 64: EX_USAGE (sysexits.h).
  process.exit(64);
}

/** Reads one line from a terminal without echoing it. */
function readHidden(prompt: string): Promise<string> {
  return new Promise((resolve) => {
    const stdin = process.stdin;
    process.stderr.write(prompt);
    stdin.setRawMode(true);
    stdin.resume();
    stdin.setEncoding("utf8");
    let value = "";
    const onData = (chunk: string) => {
      for (const ch of chunk) {
        if (ch === "\u0003") {
          process.stderr.write("\n");
          process.exit(130);
        } else if (ch === "\r" || ch === "\n" || ch === "\u0004") {
          stdin.setRawMode(false);
          stdin.pause();
          stdin.off("data", onData);
          process.stderr.write("\n");
          resolve(value);
          return;
        } else if (ch === "\u007f" || ch === "\b") {
          value = value.slice(0, -1);
        } else {
          value += ch;
        }
      }
    };
    stdin.on("data", onData);
  });
}

async function readPiped(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
  // One trailing newline (from `echo` or a file) is not part of the password.
  return Buffer.concat(chunks)
    .toString("utf8")
    .replace(/\r?\n$/, "");
}

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  // Asked for, not a mistake: before, `--help` was taken for a name without a role (exit 64).
  if (args.includes("--help") || args.includes("-h")) {
    process.stdout.write(`${USAGE}\n`);
    process.exit(0);
  }
  const [name, role, ...rest] = args;
  if (rest.length > 0 || (name !== undefined && role === undefined)) usage("give both a name and a role, or neither");
  if (name !== undefined && !/^[A-Za-z0-9_.@-]{1,64}$/.test(name)) usage("name: letters, digits, _ . @ - (max 64)");
  if (role !== undefined && !ROLES.includes(role as Role)) usage("role must be viewer or operator");

  let password: string;
  if (process.stdin.isTTY) {
    password = await readHidden("Password: ");
    const again = await readHidden("Again: ");
    if (again !== password) usage("the two passwords differ");
  } else {
    password = await readPiped();
  }
  if (password.length < 8) usage("password must be at least 8 characters");
  const hash = hashPassword(password);
  process.stdout.write(`${name !== undefined ? `${name}:${role}:${hash}` : hash}\n`);
}

await main();
