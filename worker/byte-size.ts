// Sizes in settings: a number of bytes, or a number with a unit, binary (KiB, MiB, GiB, TiB:
// powers of 1024, as JetStream and `du -h` count) or decimal (KB, MB, GB, TB).
const UNITS: Record<string, number> = {
  b: 1,
  kib: 1024,
  mib: 1024 ** 2,
  gib: 1024 ** 3,
  tib: 1024 ** 4,
  kb: 1000,
  mb: 1000 ** 2,
  gb: 1000 ** 3,
  tb: 1000 ** 4,
};

/** Parses a size ('1GiB', '512 MB', 1048576) into bytes, or returns an error message naming what was found. */
export function parseByteSize(value: number | string): number | string {
  const expected = `expected a size such as 1073741824, '1GiB' or '500MB', found ${JSON.stringify(value)}`;
  if (typeof value === 'number') return Number.isSafeInteger(value) && value >= 0 ? value : expected;
  const match = /^\s*(\d+(?:\.\d+)?)\s*([A-Za-z]*)\s*$/.exec(value);
  if (!match) return expected;
  const unit = UNITS[(match[2] || 'b').toLowerCase()];
  if (unit === undefined) return expected;
  const bytes = Math.round(Number(match[1]) * unit);
  return Number.isSafeInteger(bytes) ? bytes : expected;
}
