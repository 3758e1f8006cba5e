/**
 * The simulator's replicated state machine for the Raft-only runs: a
 * key/value register. Commands are JSON in entry data; the state snapshots to
 * JSON. It also remembers every write it applied, so the end-of-run check can
 * prove that every acknowledged write took effect.
 */

/** A write command as stored in a log entry. */
export interface WriteCommand {
  readonly reqId: string;
  readonly key: string;
  readonly value: string;
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();

export function encodeWrite(cmd: WriteCommand): Uint8Array {
  return encoder.encode(JSON.stringify(cmd));
}

export function decodeWrite(data: Uint8Array): WriteCommand {
  return JSON.parse(decoder.decode(data)) as WriteCommand;
}

export class KvRegister {
  private values = new Map<string, string>();
  /** reqIds of every write applied, in order. */
  private applied: string[] = [];

  apply(cmd: WriteCommand): void {
    this.values.set(cmd.key, cmd.value);
    this.applied.push(cmd.reqId);
  }

  get(key: string): string | undefined {
    return this.values.get(key);
  }

  appliedWrites(): readonly string[] {
    return this.applied;
  }

  snapshot(): Uint8Array {
    const keys = [...this.values.keys()].sort();
    return encoder.encode(
      JSON.stringify({ values: keys.map((k) => [k, this.values.get(k)]), applied: this.applied }),
    );
  }

  static restore(data: Uint8Array): KvRegister {
    const kv = new KvRegister();
    if (data.length === 0) return kv;
    const parsed = JSON.parse(decoder.decode(data)) as { values: [string, string][]; applied: string[] };
    kv.values = new Map(parsed.values);
    kv.applied = parsed.applied.slice();
    return kv;
  }
}
