/**
 * The one-line progress display on stderr. On a terminal the line is
 * rewritten in place (at most 4 times a second); when stderr is not a
 * terminal (a log file) a line is written at most every 10 s, so logs stay
 * readable. `clear()` before printing to stdout; `note()` writes a permanent
 * line.
 */

const TTY = process.stderr.isTTY === true;

export class Progress {
  private last = 0;
  private shown = false;

  update(text: string, force = false): void {
    const now = performance.now();
    if (!force && now - this.last < (TTY ? 250 : 10_000)) return;
    this.last = now;
    if (TTY) {
      const width = (process.stderr.columns ?? 120) - 1;
      process.stderr.write(`\r${text.slice(0, width)}\x1b[K`);
      this.shown = true;
    } else process.stderr.write(`${text}\n`);
  }

  clear(): void {
    if (TTY && this.shown) process.stderr.write("\r\x1b[K");
    this.shown = false;
  }

  note(text: string): void {
    this.clear();
    process.stderr.write(`${text}\n`);
  }
}
