// The NATS KV backend (the default): one bucket per job version, `buckets.servingTable(job, v)`,
// one KV key per row (the row key of protocol/serving-table.ts), the row as JSON. Its alias is the
// alias registry itself (tables/alias-registry.ts), so setAlias has nothing more to do.
import { MsgHdrsImpl, type NatsConnection } from '@nats-io/transport-node';
import { DeliverPolicy, jetstream, type JetStreamClient } from '@nats-io/jetstream';
import { Kvm, type KV } from '@nats-io/kv';
import { BatchPublisher, WRONG_LAST_SEQUENCE, type BatchMessage } from '../client/publish-batch.js';
import {
  buckets,
  decodeRow,
  encodeRow,
  KappaError,
  kvKeyToken,
  liveRow,
  servingTableRowKey,
  type ServingTableRow,
} from '../protocol/index.js';
import {
  assertTableName,
  sortRows,
  type PageOptions,
  type ServingTables,
  type TableOutput,
  type TablePage,
  type TableWriter,
} from './types.js';

/** Rows read at a time by rowsInOrder (concurrent gets, 256 in flight). */
const ROWS_PER_READ = 4_096;

export class KvTables implements ServingTables {
  readonly kind = 'kv';
  private readonly kvm: Kvm;
  private readonly js: JetStreamClient;
  /** Every writer's row writes go through it (opened on the first writer). */
  private publisher: BatchPublisher | undefined;

  constructor(
    private readonly nc: NatsConnection,
    /** Copies NATS keeps of each version's bucket. */
    private readonly replicas = 1,
  ) {
    this.kvm = new Kvm(nc);
    this.js = jetstream(nc);
  }

  async writer(job: string, version: string): Promise<TableWriter> {
    assertTableName(job, version);
    const bucket = buckets.servingTable(job, version);
    const kv = await this.kvm.create(bucket, { history: 1, replicas: this.replicas });
    this.publisher ??= new BatchPublisher(this.nc);
    return new RevisionGuardedTable(kv, this.publisher, bucket);
  }

  async exists(job: string, version: string): Promise<boolean> {
    return (await this.open(job, version)) !== undefined;
  }

  async read(job: string, version: string, key: string): Promise<ServingTableRow[]> {
    const kv = await this.existing(job, version);
    const token = kvKeyToken(key);
    // One filter subject per listing: nats-server 2.9 has no multi-filter consumers.
    const names: string[] = [token];
    await this.eachName(job, version, `${token}.>`, (name) => names.push(name));
    // The stored key decides: a digest token (a key too long to spell out) is checked against it.
    return sortRows((await this.liveRows(kv, names)).filter((row) => row.key === key));
  }

  /**
   * KV keeps no order: each page scans the bucket's key names (headers only, no values) and keeps
   * the `limit` smallest after the cursor, so memory holds one page whatever the table's size, and
   * time grows with the table (a large table paged often belongs in PostgreSQL or Redis).
   */
  async page(job: string, version: string, { limit, after }: PageOptions): Promise<TablePage> {
    const kv = await this.existing(job, version);
    const smallest = new SmallestNames(limit + 1);
    await this.eachName(job, version, '>', (name) => {
      if (after === undefined || name > after) smallest.offer(name);
    });
    const names = smallest.sorted();
    const more = names.length > limit;
    if (more) names.length = limit;
    const byName = new Map<string, ServingTableRow>();
    await this.liveRows(kv, names, (name, row) => byName.set(name, row));
    const rows = names.flatMap((name) => byName.get(name) ?? []);
    return more ? { rows, next: names.at(-1)! } : { rows };
  }
  /**
   * Calls `each` with the name of every row under `filter` (a row-key subject pattern): an ordered
   * consumer of the bucket's last message per subject, headers only, read until the server says
   * none is pending. Not `kv.keys()`: it ends at the first idle heartbeat, which on a busy server
   * can come before the last name (seen: a listing 82,020 names short, without an error).
   */
  private async eachName(job: string, version: string, filter: string, each: (name: string) => void): Promise<void> {
    const bucket = buckets.servingTable(job, version);
    const prefix = `$KV.${bucket}.`;
    const consumer = await this.js.consumers.get(`KV_${bucket}`, {
      filter_subjects: `${prefix}${filter}`,
      deliver_policy: DeliverPolicy.LastPerSubject,
      headers_only: true,
    });
    if ((await consumer.info(true)).num_pending === 0) return;
    const messages = await consumer.consume({ max_messages: 10_000 });
    for await (const message of messages) {
      const operation = message.headers?.get('KV-Operation');
      if (operation !== 'DEL' && operation !== 'PURGE') each(message.subject.slice(prefix.length));
      if (message.info.pending === 0) break;
    }
  }

  async *rowsInOrder(job: string, version: string): AsyncGenerator<ServingTableRow> {
    const kv = await this.existing(job, version);
    const names: string[] = [];
    await this.eachName(job, version, '>', (name) => names.push(name));
    names.sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
    for (let start = 0; start < names.length; start += ROWS_PER_READ) {
      yield* await this.liveRows(kv, names.slice(start, start + ROWS_PER_READ));
    }
  }

  async setAlias(): Promise<void> {
    // The alias registry is the KV backend's alias.
  }

  async drop(job: string, version: string): Promise<void> {
    await (await this.open(job, version))?.destroy();
  }

  async close(): Promise<void> {
    this.publisher?.close();
    this.publisher = undefined;
  }

  private async open(job: string, version: string): Promise<KV | undefined> {
    assertTableName(job, version);
    try {
      const kv = await this.kvm.open(buckets.servingTable(job, version));
      await kv.status();
      return kv;
    } catch {
      return undefined;
    }
  }

  private async existing(job: string, version: string): Promise<KV> {
    const kv = await this.open(job, version);
    if (!kv)
      throw new KappaError(
        'TOPIC_NOT_FOUND',
        `job '${job}' version '${version}' has no serving table (bucket ${buckets.servingTable(job, version)})`,
      );
    return kv;
  }

  /** The live rows under `names` (tombstones and deleted entries skipped), read a bounded number at a time. */
  private async liveRows(
    kv: KV,
    names: readonly string[],
    each?: (name: string, row: ServingTableRow) => void,
  ): Promise<ServingTableRow[]> {
    const rows: ServingTableRow[] = [];
    for (let start = 0; start < names.length; start += 256) {
      const slice = names.slice(start, start + 256);
      const entries = await Promise.all(slice.map((name) => kv.get(name)));
      entries.forEach((entry, index) => {
        const row = liveRow(entry);
        if (row === undefined) return;
        rows.push(row);
        each?.(slice[index]!, row);
      });
    }
    return rows;
  }
}

/** The `capacity` smallest names offered, in memory proportional to the capacity, not the names offered. */
class SmallestNames {
  private names: string[] = [];
  /** Names at or above this cannot be among the smallest any more (known once a prune has filled up). */
  private bound: string | undefined;

  constructor(private readonly capacity: number) {}

  offer(name: string): void {
    if (this.bound !== undefined && name >= this.bound) return;
    this.names.push(name);
    if (this.names.length >= this.capacity * 2) this.prune();
  }

  sorted(): string[] {
    this.prune();
    return this.names;
  }

  private prune(): void {
    // Code-unit order, as `>` compares: row keys are ASCII, so it is byte order too.
    this.names.sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
    if (this.names.length >= this.capacity) {
      this.names.length = this.capacity;
      this.bound = this.names[this.capacity - 1];
    }
  }
}

/**
 * A serving table in NATS KV where an older revision never overwrites a newer one: every write is
 * a compare-and-set on the KV revision last seen for the row (JetStream's expected last subject
 * sequence), and on a conflict (another owner, a replay after a restore, a resumed zombie wrote
 * it) the stored output revision decides. A retraction is a tombstone row with its revision, for
 * the same reason.
 *
 * A batch goes out as pipelined publishes awaited once (client/publish-batch.ts): the task is the
 * only writer of its rows (fenced by its epoch), so it knows each row's last revision and almost
 * every compare-and-set holds; the few that do not (a row written before a restart, which this
 * writer has not seen) take the read-and-decide path one by one.
 */
/** JetStream's compare-and-set header: the sequence of the subject's last message (0: none). */
const EXPECTED_LAST_SUBJECT_SEQUENCE = 'Nats-Expected-Last-Subject-Sequence';

export class RevisionGuardedTable implements TableWriter {
  /** Per row: the KV revision of our last write and the output revision it holds. */
  private readonly known = new Map<string, { kvRevision: number; revision: number }>();
  /** `$KV.<bucket>.`: a row's subject is this and its row key. */
  private readonly subjectPrefix: string;

  constructor(
    readonly kv: KV,
    private readonly publisher: BatchPublisher,
    bucket: string,
  ) {
    this.subjectPrefix = `$KV.${bucket}.`;
  }

  async write(outputs: readonly TableOutput[]): Promise<void> {
    const messages: BatchMessage[] = [];
    const sent: { rowKey: string; output: TableOutput }[] = [];
    for (const output of outputs) {
      const rowKey = servingTableRowKey(output.key, output.window, output.row);
      const known = this.known.get(rowKey);
      if (known !== undefined && known.revision >= output.revision) continue;
      // 0: the row must not exist yet (a fresh table, or a row this writer has not seen).
      const headers = known === undefined ? ABSENT_ROW : new ExpectedLastSubjectSequence(known.kvRevision);
      messages.push({ subject: this.subjectPrefix + rowKey, payload: rowBody(output), headers });
      sent.push({ rowKey, output });
    }
    const outcomes = await this.publisher.publish(messages);
    const conflicts: TableOutput[] = [];
    for (let index = 0; index < outcomes.length; index++) {
      const outcome = outcomes[index]!;
      const { rowKey, output } = sent[index]!;
      if (outcome.stored) this.remember(rowKey, outcome.sequence, output.revision);
      else if (outcome.code === WRONG_LAST_SEQUENCE) conflicts.push(output);
      else
        throw new KappaError(
          'PUBLISH_FAILED',
          `serving table row ${rowKey}: the server refused the write: ${outcome.description} (err_code ${outcome.code})`,
        );
    }
    await Promise.all(conflicts.map((output) => this.writeOne(output)));
  }

  /** One row's write, awaited: a compare-and-set, and on a conflict the stored revision decides. */
  async writeOne(output: TableOutput): Promise<void> {
    const rowKey = servingTableRowKey(output.key, output.window, output.row);
    let known = this.known.get(rowKey);
    if (known !== undefined && known.revision >= output.revision) return;
    const body = rowBody(output);
    for (let attempt = 0; attempt < 8; attempt++) {
      try {
        const kvRevision =
          known === undefined
            ? await this.kv.create(rowKey, body)
            : await this.kv.update(rowKey, body, known.kvRevision);
        this.remember(rowKey, kvRevision, output.revision);
        return;
      } catch (error) {
        // The row is not what we last saw: read it and let the output revision decide.
        const entry = await this.kv.get(rowKey);
        if (entry === null) {
          if (known === undefined) throw error; // create failed on an absent row: not a conflict
          known = undefined;
          continue;
        }
        const stored = entry.operation === 'PUT' ? decodeRow(entry.value).revision : -1;
        if (stored >= output.revision) {
          this.remember(rowKey, entry.revision, stored);
          return;
        }
        known = { kvRevision: entry.revision, revision: stored };
      }
    }
    throw new KappaError(
      'PUBLISH_FAILED',
      `serving table row ${rowKey} kept changing; output revision ${output.revision} not written`,
    );
  }

  private remember(rowKey: string, kvRevision: number, revision: number): void {
    // Bounded: a forgotten row costs one extra read on its next write, nothing more.
    if (this.known.size >= 500_000) this.known.clear();
    this.known.set(rowKey, { kvRevision, revision });
  }
}

/**
 * The compare-and-set header of one row write, encoded straight from its number: a MsgHdrsImpl
 * filled by set() validates and canonicalizes the name and builds the block through a Map on every
 * row (≈ 10% of a replaying worker's table writes, bench/README.md). Only encode() is used by a
 * publish; the bytes are what MsgHdrsImpl.encode() gives for the same header.
 */
export class ExpectedLastSubjectSequence extends MsgHdrsImpl {
  constructor(private readonly sequence: number) {
    super();
  }

  override encode(): Uint8Array {
    if (this.sequence === 0) return ABSENT_ROW_HEADER;
    return textEncoder.encode(`NATS/1.0\r\n${EXPECTED_LAST_SUBJECT_SEQUENCE}: ${this.sequence}\r\n\r\n`);
  }
}

const textEncoder = new TextEncoder();
const ABSENT_ROW_HEADER = textEncoder.encode(`NATS/1.0\r\n${EXPECTED_LAST_SUBJECT_SEQUENCE}: 0\r\n\r\n`);
/** The header of every write of a row this writer has not seen (most rows of a replay): one object, never changed. */
const ABSENT_ROW = new ExpectedLastSubjectSequence(0);

/** The stored row: the full key and row go in the value, as a reader checks them (a long key's row key is a digest). */
function rowBody(output: TableOutput): Uint8Array {
  return encodeRow({
    key: output.key,
    ...(output.row !== undefined ? { row: output.row } : {}),
    start: output.window?.start,
    end: output.window?.end,
    value: output.kind === 'retract' ? null : output.value,
    revision: output.revision,
    ...(output.kind === 'retract' ? { retracted: true } : {}),
  });
}
