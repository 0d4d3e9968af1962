import type { Writer } from "../io.ts";

/** A one-line progress bar on stderr, only when stderr is a terminal. */
export class ProgressBar {
  readonly #out: Writer;
  readonly #total: number;
  readonly #started = performance.now();
  #timer: NodeJS.Timeout | undefined;
  #done = 0;
  #failed = 0;

  constructor(out: Writer, total: number) {
    this.#out = out;
    this.#total = total;
    if (out.isTTY) {
      this.#timer = setInterval(() => this.#draw(), 100);
      this.#timer.unref();
    }
  }

  update(done: number, failed: number): void {
    this.#done = done;
    this.#failed = failed;
  }

  #draw(): void {
    const width = 30;
    const ratio = this.#total === 0 ? 1 : this.#done / this.#total;
    const filled = Math.round(ratio * width);
    const seconds = (performance.now() - this.#started) / 1000;
    const rate = seconds > 0 ? Math.round(this.#done / seconds) : 0;
    this.#out.write(
      `\r[${"#".repeat(filled)}${".".repeat(width - filled)}] ${this.#done}/${this.#total} ` +
        `${Math.round(ratio * 100)}%  ${rate}/s  not acknowledged ${this.#failed}   `,
    );
  }

  stop(): void {
    if (this.#timer === undefined) return;
    clearInterval(this.#timer);
    this.#timer = undefined;
    this.#out.write("\r\x1b[K");
  }
}
