/**
 * A tiny HTML templating helper. Every interpolated value is escaped unless it is already `SafeHtml`
 * (the result of another `html` template or of `raw`), so markup can only come from template literals in
 * this code base, never from data (notification ids, error messages, job payloads are attacker-influenced:
 * anyone can POST a notification to the ingress).
 */
export class SafeHtml {
  constructor(readonly value: string) {}
  toString(): string {
    return this.value;
  }
}

const ESCAPES: Record<string, string> = {
  "&": "&amp;",
  "<": "&lt;",
  ">": "&gt;",
  '"': "&quot;",
  "'": "&#39;",
  "`": "&#96;",
};

export function escapeHtml(value: string): string {
  return value.replace(/[&<>"'`]/g, (c) => ESCAPES[c] ?? c);
}

/** A value as template content: nothing for null/undefined/false, items for arrays, escaped text otherwise. */
function render(value: unknown): string {
  if (value === null || value === undefined || value === false) return "";
  if (value instanceof SafeHtml) return value.value;
  if (Array.isArray(value)) return value.map(render).join("");
  return escapeHtml(String(value));
}

export function html(strings: TemplateStringsArray, ...values: unknown[]): SafeHtml {
  let out = strings[0] ?? "";
  for (let i = 0; i < values.length; i++) out += render(values[i]) + (strings[i + 1] ?? "");
  return new SafeHtml(out);
}

/** Trusted markup produced by this code (never pass data through it). */
export function raw(markup: string): SafeHtml {
  return new SafeHtml(markup);
}

/** A URL path plus query string built from parts; values are percent-encoded (then escaped by `html`). */
export function href(path: string, query: Record<string, string | number | undefined> = {}): string {
  const params = new URLSearchParams();
  for (const [key, value] of Object.entries(query)) {
    if (value !== undefined && value !== "") params.set(key, String(value));
  }
  const qs = params.toString();
  return qs ? `${path}?${qs}` : path;
}
