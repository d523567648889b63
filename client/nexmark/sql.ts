// The Nexmark queries' reference answers: a query's SQL (examples/nexmark/q<N>.sql) run by DuckDB
// over the tables person, auction and bid loaded from a JSON lines file of generated events (what
// `kappa nexmark generate --file` writes), and the comparison of a job's rows with that answer as
// bags of values. Used by `kappa nexmark run`, bench/nexmark.ts and test/nexmark-queries.test.ts.
//
// DuckDB (`@duckdb/node-api`) is a dev dependency, imported only when a query is run: the package
// works without it, and the check says what to install when it is missing.
import { readFileSync } from 'node:fs';
import { ConfigError } from '../../protocol/index.js';

/** The SQL in `sqlFile` over tables person, auction and bid loaded from the JSON lines file, each row as JSON. */
export async function nexmarkSql(sqlFile: string, eventsFile: string): Promise<unknown[]> {
  let duckdb: typeof import('@duckdb/node-api');
  try {
    duckdb = await import('@duckdb/node-api');
  } catch (error) {
    throw new ConfigError(
      'the Nexmark queries are checked against DuckDB: install @duckdb/node-api (a dev dependency: npm install)',
      { cause: error },
    );
  }
  const sql = readFileSync(sqlFile, 'utf8').trim().replace(/;$/, '');
  const instance = await duckdb.DuckDBInstance.create(':memory:');
  const db = await instance.connect();
  try {
    const events = `read_json_auto('${eventsFile.replaceAll("'", "''")}')`;
    await db.run(
      `CREATE TABLE person AS SELECT id, name, emailAddress, creditCard, city, state, dateTime, extra FROM ${events} WHERE type = 'person'`,
    );
    await db.run(
      `CREATE TABLE auction AS SELECT id, itemName, description, initialBid, reserve, dateTime, expires, seller, category, extra FROM ${events} WHERE type = 'auction'`,
    );
    await db.run(
      `CREATE TABLE bid AS SELECT auction, bidder, price, channel, url, dateTime, extra FROM ${events} WHERE type = 'bid'`,
    );
    const result = await db.runAndReadAll(`SELECT to_json(answer)::VARCHAR FROM (\n${sql}\n) AS answer`);
    return result.getRows().map(([json]) => JSON.parse(String(json)) as unknown);
  } finally {
    db.closeSync();
    instance.closeSync();
  }
}

/** JSON with object keys sorted, so two rows compare by content whatever the field order. */
export function canonical(value: unknown): string {
  return JSON.stringify(value, (_, inner: unknown) =>
    inner !== null && typeof inner === 'object' && !Array.isArray(inner)
      ? Object.fromEntries(Object.entries(inner).sort(([a], [b]) => (a < b ? -1 : 1)))
      : inner,
  );
}

/** Rows as sorted canonical JSON, for comparing bags of rows. */
export function sortedValues(values: readonly unknown[]): string[] {
  return values.map(canonical).sort();
}

/** What one sorted bag has that the other lacks, each line saying where it is missing. */
export function bagDifferences(actual: readonly string[], expected: readonly string[]): string[] {
  const differences: string[] = [];
  let a = 0;
  let e = 0;
  while (a < actual.length || e < expected.length) {
    if (e >= expected.length || (a < actual.length && actual[a]! < expected[e]!))
      differences.push(`only in the table: ${actual[a++]}`);
    else if (a >= actual.length || expected[e]! < actual[a]!) differences.push(`only in SQL: ${expected[e++]}`);
    else {
      a++;
      e++;
    }
  }
  return differences;
}
