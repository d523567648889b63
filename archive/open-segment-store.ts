// Which segment store a process uses: S3 when the environment names a bucket
// (KAPPA_ARCHIVE_S3_BUCKET, see s3-segment-store.ts), else the NATS Object Store.
import type { NatsConnection } from '@nats-io/transport-node';
import { S3SegmentStore, s3SettingsFromEnv } from './s3-segment-store.js';
import { NatsObjectSegmentStore, type SegmentStore } from './segment-store.js';

export async function openSegmentStore(
  nc: NatsConnection,
  options: { replicas?: number; env?: NodeJS.ProcessEnv } = {},
): Promise<SegmentStore> {
  const s3 = s3SettingsFromEnv(options.env);
  if (s3) return new S3SegmentStore(s3);
  return NatsObjectSegmentStore.open(nc, options.replicas === undefined ? {} : { replicas: options.replicas });
}
