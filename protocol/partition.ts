// The partitioner: FNV-1a-32 over the key's UTF-8 bytes, mod the partition count. It is the
// hash nats-server's `partition(n, …)` subject mapping uses, so a producer in any language, or
// the server itself, puts a key in the same partition as we do.

const FNV_OFFSET_BASIS = 0x811c9dc5;
const FNV_PRIME = 0x01000193;
const utf8 = new TextEncoder();

export function fnv1a32(bytes: Uint8Array): number {
  let hash = FNV_OFFSET_BASIS;
  for (let index = 0; index < bytes.length; index++) {
    hash ^= bytes[index]!;
    hash = Math.imul(hash, FNV_PRIME);
  }
  return hash >>> 0;
}

function fnv1a32String(key: string): number {
  // ASCII keys (the common case) hash without allocating an encoded copy.
  let hash = FNV_OFFSET_BASIS;
  for (let index = 0; index < key.length; index++) {
    const code = key.charCodeAt(index);
    if (code > 0x7f) return fnv1a32(utf8.encode(key));
    hash ^= code;
    hash = Math.imul(hash, FNV_PRIME);
  }
  return hash >>> 0;
}

/** The partition (0 … partitionCount − 1) that holds a key. */
export function partitionOf(key: string, partitionCount: number): number {
  return fnv1a32String(key) % partitionCount;
}
