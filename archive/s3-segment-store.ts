// Segments in any S3-compatible store (AWS S3, MinIO, Ceph, R2, …): path-style requests signed
// with AWS Signature Version 4 over Node's fetch, no SDK. Objects are `<prefix><segment name>`.
// Settings from the environment (`s3SettingsFromEnv`): KAPPA_ARCHIVE_S3_ENDPOINT, _BUCKET,
// _PREFIX, _REGION, and the credentials from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY or a file
// (KAPPA_ARCHIVE_S3_CREDENTIALS_FILE: two lines, key id then secret).
import { createHash, createHmac } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { ConfigError, KappaError } from '../protocol/index.js';
import type { SegmentStore } from './segment-store.js';

export interface S3Settings {
  /** e.g. https://s3.eu-west-1.amazonaws.com or http://127.0.0.1:9000 */
  endpoint: string;
  bucket: string;
  /** Prepended to every object name (e.g. `kappa/`); default none. */
  prefix?: string;
  region?: string;
  accessKeyId: string;
  secretAccessKey: string;
}

/** The S3 settings the environment gives, or undefined when KAPPA_ARCHIVE_S3_BUCKET is not set. */
export function s3SettingsFromEnv(env: NodeJS.ProcessEnv = process.env): S3Settings | undefined {
  const bucket = env.KAPPA_ARCHIVE_S3_BUCKET;
  if (!bucket) return undefined;
  const endpoint = env.KAPPA_ARCHIVE_S3_ENDPOINT;
  if (!endpoint) throw new ConfigError('KAPPA_ARCHIVE_S3_BUCKET is set but KAPPA_ARCHIVE_S3_ENDPOINT is not');
  let accessKeyId = env.AWS_ACCESS_KEY_ID;
  let secretAccessKey = env.AWS_SECRET_ACCESS_KEY;
  const file = env.KAPPA_ARCHIVE_S3_CREDENTIALS_FILE;
  if (file) {
    let lines: string[];
    try {
      lines = readFileSync(file, 'utf8')
        .split('\n')
        .map((line) => line.trim());
    } catch (error) {
      throw new ConfigError(`KAPPA_ARCHIVE_S3_CREDENTIALS_FILE ${file} cannot be read: ${(error as Error).message}`);
    }
    [accessKeyId, secretAccessKey] = lines;
  }
  if (!accessKeyId || !secretAccessKey)
    throw new ConfigError(
      'the S3 archive store needs credentials: AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or KAPPA_ARCHIVE_S3_CREDENTIALS_FILE (key id, then secret, one per line)',
    );
  return {
    endpoint,
    bucket,
    prefix: env.KAPPA_ARCHIVE_S3_PREFIX ?? '',
    region: env.KAPPA_ARCHIVE_S3_REGION ?? env.AWS_REGION ?? 'us-east-1',
    accessKeyId,
    secretAccessKey,
  };
}

export class S3SegmentStore implements SegmentStore {
  private readonly endpoint: URL;
  private readonly prefix: string;
  private readonly region: string;

  constructor(private readonly settings: S3Settings) {
    this.endpoint = new URL(settings.endpoint);
    this.prefix = settings.prefix ?? '';
    this.region = settings.region ?? 'us-east-1';
  }

  /** Creates the bucket when it does not exist (tests and first runs; production buckets exist). */
  async ensureBucket(): Promise<void> {
    const head = await this.request('HEAD', '', {});
    if (head.status === 200) return;
    const created = await this.request('PUT', '', {});
    if (!created.ok && created.status !== 409) throw await this.failure('create bucket', created);
  }

  async put(name: string, bytes: Uint8Array): Promise<void> {
    const response = await this.request('PUT', this.prefix + name, {}, bytes);
    if (!response.ok) throw await this.failure(`put ${name}`, response);
  }

  async get(name: string): Promise<Uint8Array | undefined> {
    const response = await this.request('GET', this.prefix + name, {});
    if (response.status === 404) return undefined;
    if (!response.ok) throw await this.failure(`get ${name}`, response);
    return new Uint8Array(await response.arrayBuffer());
  }

  async list(prefix: string): Promise<string[]> {
    const names: string[] = [];
    let token: string | undefined;
    do {
      const query: Record<string, string> = { 'list-type': '2', prefix: this.prefix + prefix };
      if (token !== undefined) query['continuation-token'] = token;
      const response = await this.request('GET', '', query);
      if (!response.ok) throw await this.failure(`list ${prefix}`, response);
      const xml = await response.text();
      for (const match of xml.matchAll(/<Key>([^<]*)<\/Key>/g))
        names.push(unescapeXml(match[1]!).slice(this.prefix.length));
      token = /<IsTruncated>true<\/IsTruncated>/.test(xml)
        ? unescapeXml(/<NextContinuationToken>([^<]*)<\/NextContinuationToken>/.exec(xml)?.[1] ?? '')
        : undefined;
    } while (token);
    return names.sort();
  }

  async delete(name: string): Promise<void> {
    const response = await this.request('DELETE', this.prefix + name, {});
    if (!response.ok && response.status !== 404) throw await this.failure(`delete ${name}`, response);
  }

  private async failure(what: string, response: Response): Promise<KappaError> {
    const body = (await response.text().catch(() => '')).slice(0, 300);
    return new KappaError(
      'ARCHIVE_INVALID',
      `S3 ${what} in bucket ${this.settings.bucket} at ${this.settings.endpoint}: HTTP ${response.status} ${body}`,
    );
  }

  /** One path-style request, signed with AWS Signature Version 4. */
  private request(method: string, key: string, query: Record<string, string>, body?: Uint8Array): Promise<Response> {
    const path = `${this.endpoint.pathname.replace(/\/$/, '')}/${uriEncode(this.settings.bucket, false)}${key === '' ? '' : `/${uriEncode(key, false)}`}`;
    const canonicalQuery = Object.keys(query)
      .sort()
      .map((name) => `${uriEncode(name, true)}=${uriEncode(query[name]!, true)}`)
      .join('&');
    const now = new Date();
    const amzDate = now
      .toISOString()
      .replace(/[-:]/g, '')
      .replace(/\.\d{3}/, '');
    const day = amzDate.slice(0, 8);
    const payloadHash = sha256Hex(body ?? new Uint8Array());
    const headers: Record<string, string> = {
      host: this.endpoint.host,
      'x-amz-content-sha256': payloadHash,
      'x-amz-date': amzDate,
    };
    const signedHeaders = Object.keys(headers).sort();
    const canonicalRequest = [
      method,
      path,
      canonicalQuery,
      signedHeaders.map((name) => `${name}:${headers[name]}\n`).join(''),
      signedHeaders.join(';'),
      payloadHash,
    ].join('\n');
    const scope = `${day}/${this.region}/s3/aws4_request`;
    const stringToSign = ['AWS4-HMAC-SHA256', amzDate, scope, sha256Hex(Buffer.from(canonicalRequest))].join('\n');
    let signingKey: Buffer = hmac(`AWS4${this.settings.secretAccessKey}`, day);
    for (const part of [this.region, 's3', 'aws4_request']) signingKey = hmac(signingKey, part);
    const signature = hmac(signingKey, stringToSign).toString('hex');
    const url = `${this.endpoint.protocol}//${this.endpoint.host}${path}${canonicalQuery ? `?${canonicalQuery}` : ''}`;
    return fetch(url, {
      method,
      headers: {
        'x-amz-content-sha256': payloadHash,
        'x-amz-date': amzDate,
        authorization: `AWS4-HMAC-SHA256 Credential=${this.settings.accessKeyId}/${scope}, SignedHeaders=${signedHeaders.join(';')}, Signature=${signature}`,
      },
      ...(body === undefined ? {} : { body }),
    });
  }
}

function sha256Hex(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex');
}

function hmac(key: string | Buffer, data: string): Buffer {
  return createHmac('sha256', key).update(data).digest();
}

/** AWS's URI encoding: RFC 3986 unreserved characters kept, '/' kept in paths. */
function uriEncode(value: string, encodeSlash: boolean): string {
  const encoded = encodeURIComponent(value).replace(
    /[!'()*]/g,
    (char) => `%${char.charCodeAt(0).toString(16).toUpperCase()}`,
  );
  return encodeSlash ? encoded : encoded.replace(/%2F/g, '/');
}

function unescapeXml(text: string): string {
  return text
    .replace(/&lt;/g, '<')
    .replace(/&gt;/g, '>')
    .replace(/&quot;/g, '"')
    .replace(/&apos;/g, "'")
    .replace(/&amp;/g, '&');
}
