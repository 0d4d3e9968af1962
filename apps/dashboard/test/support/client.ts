import type { FastifyInstance, InjectOptions, LightMyRequestResponse } from "fastify";

export const HOST = "dashboard.test";
export const ORIGIN = `http://${HOST}`;

type Method = "GET" | "HEAD" | "POST" | "PUT" | "PATCH" | "DELETE";

/**
 * A browser-like client over inject(): keeps cookies, sends Host and a same-origin Origin on mutations, and
 * sends the CSRF token it last saw in a page (hidden `_csrf` field) with forms.
 */
export class Client {
  readonly cookies = new Map<string, string>();
  csrfToken: string | undefined;

  constructor(private readonly app: FastifyInstance) {}

  async request(
    method: Method,
    url: string,
    options: { form?: Record<string, string | string[]>; json?: unknown; headers?: Record<string, string> } = {},
  ): Promise<LightMyRequestResponse> {
    const headers: Record<string, string> = { host: HOST, accept: "text/html", ...(options.headers ?? {}) };
    if (this.cookies.size > 0) {
      headers.cookie = [...this.cookies].map(([k, v]) => `${k}=${v}`).join("; ");
    }
    if (method !== "GET" && method !== "HEAD" && !("origin" in headers)) headers.origin = ORIGIN;
    const inject: InjectOptions = { method, url, headers };
    if (options.form) {
      const body = new URLSearchParams();
      for (const [key, value] of Object.entries(options.form)) {
        for (const v of [value].flat()) body.append(key, v);
      }
      if (this.csrfToken && !("_csrf" in options.form)) body.append("_csrf", this.csrfToken);
      headers["content-type"] = "application/x-www-form-urlencoded";
      inject.payload = body.toString();
    } else if (options.json !== undefined) {
      headers["content-type"] = "application/json";
      inject.payload = JSON.stringify(options.json);
    }
    const response = await this.app.inject(inject);
    for (const cookie of response.cookies as { name: string; value: string; maxAge?: number; expires?: Date }[]) {
      const expired =
        cookie.value === "" || cookie.maxAge === 0 || (cookie.expires && cookie.expires.getTime() < Date.now());
      if (expired) this.cookies.delete(cookie.name);
      else this.cookies.set(cookie.name, cookie.value);
    }
    const token = /name="_csrf" value="([^"]+)"/.exec(response.body)?.[1];
    if (token) this.csrfToken = token;
    return response;
  }

  get(url: string, headers?: Record<string, string>) {
    return this.request("GET", url, { headers });
  }

  post(url: string, form: Record<string, string | string[]>, headers?: Record<string, string>) {
    return this.request("POST", url, { form, headers });
  }

  /** Logs in through the form, as a browser would; returns the POST /login response. */
  async login(name: string, password: string): Promise<LightMyRequestResponse> {
    await this.get("/login");
    return this.post("/login", { username: name, password });
  }
}

/** Logged-in client, asserting the login worked. */
export async function loggedIn(app: FastifyInstance, name: string, password: string): Promise<Client> {
  const client = new Client(app);
  const response = await client.login(name, password);
  // `__Host-wpn_session` where cookies are secure (DASHBOARD_COOKIE_SECURE, or HTTPS).
  const session = client.cookies.has("wpn_session") || client.cookies.has("__Host-wpn_session");
  if (response.statusCode !== 303 || !session) {
    throw new Error(`login as ${name} failed: ${response.statusCode} ${response.body.slice(0, 200)}`);
  }
  // Load a page so the client holds a CSRF token for forms.
  await client.get("/dead-letters");
  return client;
}

/**
 * Opens a bull-board page (which hands out XSRF-TOKEN, auth/csrf.ts) and returns the headers bull-board's own client
 * would send with its API calls.
 */
export async function boardHeaders(client: Client, board = "/queues"): Promise<Record<string, string>> {
  const page = await client.get(`${board}/`);
  const token = client.cookies.get("XSRF-TOKEN");
  if (page.statusCode !== 200 || !token) {
    throw new Error(`${board}/ gave no XSRF-TOKEN: ${page.statusCode} ${page.body.slice(0, 200)}`);
  }
  return { "x-xsrf-token": decodeURIComponent(token), accept: "application/json" };
}
