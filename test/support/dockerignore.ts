/**
 * Docker's .dockerignore rules (moby/patternmatcher), enough to ask whether a file is sent to `docker build`:
 * patterns are relative to the context root (a leading `/` is dropped), `*` and `?` stay within one path segment,
 * `**` spans any number of segments, a pattern that matches a directory excludes everything under it, and a later
 * `!pattern` re-includes what an earlier one excluded (the last matching line decides).
 */
export function dockerignoreExcludes(dockerignore: string, path: string): boolean {
  const rules = dockerignore
    .split(/\r?\n/)
    .map((line) => line.trim())
    .filter((line) => line !== "" && !line.startsWith("#"))
    .map((line) => {
      const exception = line.startsWith("!");
      return { exception, pattern: toRegExp((exception ? line.slice(1) : line).replace(/^\/+|\/+$/g, "")) };
    });
  const segments = path.split("/");
  // The file itself and each of its parent directories: excluding a directory excludes its contents.
  const candidates = segments.map((_, i) => segments.slice(0, i + 1).join("/"));
  let excluded = false;
  for (const { exception, pattern } of rules) {
    if (candidates.some((candidate) => pattern.test(candidate))) excluded = !exception;
  }
  return excluded;
}

function toRegExp(pattern: string): RegExp {
  let source = "";
  for (let i = 0; i < pattern.length; i++) {
    const c = pattern.charAt(i);
    if (pattern.startsWith("**/", i)) {
      source += "(?:.*/)?";
      i += 2;
    } else if (pattern.startsWith("**", i)) {
      source += ".*";
      i += 1;
    } else if (c === "*") source += "[^/]*";
    else if (c === "?") source += "[^/]";
    else source += c.replace(/[.+^${}()|[\]\\]/g, "\\$&");
  }
  return new RegExp(`^${source}$`);
}
