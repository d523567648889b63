// Rejected input lines (`kappa produce`, `kappa run`): the first few on stderr, every one in a
// rejects file with its line number, reason and the input as read, so it can be fixed and resent.
import { createWriteStream, type WriteStream } from 'node:fs';
import { once } from 'node:events';
import { ConfigError } from '../protocol/index.js';

export class RejectsFile {
  count = 0;
  private stream: WriteStream | undefined;
  private writeError: Error | undefined;

  /** `listed`: how many rejected lines are also printed on stderr; past that, only the file has them. */
  constructor(
    readonly path: string,
    private readonly listed: number,
  ) {}

  add(lineNumber: number, reason: string, line: string): void {
    this.count++;
    if (this.count <= this.listed) console.error(`kappa: line ${lineNumber} rejected: ${reason}`);
    else if (this.count === this.listed + 1) console.error(`kappa: more lines rejected; see ${this.path}`);
    // Opened on the first rejected line: a clean run leaves no empty file behind.
    if (!this.stream) {
      this.stream = createWriteStream(this.path);
      this.stream.on('error', (error) => (this.writeError ??= error));
    }
    this.stream.write(`${JSON.stringify({ line: lineNumber, reason, input: line })}\n`);
  }

  async close(): Promise<void> {
    if (!this.stream) return;
    if (!this.writeError) {
      this.stream.end();
      await Promise.race([once(this.stream, 'finish'), once(this.stream, 'error')]).catch(() => undefined);
    }
    if (this.writeError)
      throw new ConfigError(`cannot write the rejects file ${this.path}: ${this.writeError.message}`);
  }
}
