// Kappa's roles on NATS and what each may publish and subscribe to: the permissions of the nkey
// users `kappa auth init` writes into the server's authorization block. Worked out from what each
// process sends (protocol/names.ts for Kappa's subjects, nats.js for the JetStream API, KV `$KV.…`
// and Object Store `$O.…` subjects it uses) and checked against a real server by
// test/nats-roles-e2e.test.ts.
//
// NATS matches whole tokens only: `$JS.API.STREAM.INFO.*` cannot say "only the streams named
// KV_kappa_table_…", and a topic's subjects `<topic>.<partition>.<key>` have no common prefix.
// So a role that works on serving tables or on topics it cannot name in advance gets the wildcard,
// and a deny list takes out what it must never send (deny wins over allow in nats-server).
import { buckets, subjects } from '../protocol/index.js';

export const ROLES = ['coordinator', 'worker', 'producer', 'reader', 'admin'] as const;
export type Role = (typeof ROLES)[number];

export interface RolePermissions {
  publish: { allow: string[]; deny?: string[] };
  subscribe: { allow: string[]; deny?: string[] };
  /** May answer a request it received (publish to that request's reply subject, once). */
  allowResponses?: boolean;
}

export interface RoleOptions {
  /** The topics producers may publish to; none: any topic (every `a.b.c` subject outside Kappa's own). */
  topics?: readonly string[];
}

const INBOX = '_INBOX.>';
/** Every admin verb's subject (`kappa.admin.<verb>`): only the admin role may send them. */
const ADMIN = subjects.adminRequest('*');
/** JetStream flow-control replies of ordered consumers (KV keys/watch, object reads). */
const FLOW_CONTROL = '$JS.FC.>';
/** Reading a stream: its info, messages by sequence or subject, and ephemeral/durable consumers pulling from it. */
const STREAM_READ = [
  '$JS.API.INFO',
  '$JS.API.STREAM.INFO.*',
  '$JS.API.STREAM.MSG.GET.*',
  '$JS.API.DIRECT.GET.*',
  '$JS.API.DIRECT.GET.*.>',
  '$JS.API.CONSUMER.CREATE.*',
  '$JS.API.CONSUMER.CREATE.*.>',
  '$JS.API.CONSUMER.INFO.*.*',
  '$JS.API.CONSUMER.DELETE.*.*',
  '$JS.API.CONSUMER.MSG.NEXT.*.*',
  FLOW_CONTROL,
];
/** Buckets only the coordinator (and the admin, for topics) writes: leadership, assignments, aliases, topics. */
const CONTROL_BUCKETS = [buckets.leader, buckets.cluster, buckets.aliases, buckets.topics].map(
  (bucket) => `$KV.${bucket}.>`,
);
/** A topic's event subjects: `<topic>.<partition>.<key-token>`, three tokens. */
const topicSubjects = (topic: string) => `${topic}.*.*`;
/** Every three-token subject, i.e. any topic's events, less Kappa's and the server's own subjects of that shape. */
const ANY_TOPIC = '*.*.*';
const NOT_A_TOPIC = ['kappa.>', '$KV.>', '$O.>', '$SYS.>', '$JS.EVENT.>', INBOX];

export function rolePermissions(options: RoleOptions = {}): Record<Role, RolePermissions> {
  const topics = options.topics?.length ? options.topics.map(topicSubjects) : [ANY_TOPIC];
  return {
    // The control plane: buckets and streams of every job version (creates repartition topics and
    // tables' buckets, drops them on retire), answers workers and admins, instructs workers.
    coordinator: {
      publish: {
        allow: ['$JS.API.>', FLOW_CONTROL, '$KV.>', '$O.>', subjects.coordinatorToWorker('*')],
        deny: [ADMIN],
      },
      subscribe: { allow: [subjects.workerToCoordinator, ADMIN, INBOX] },
      allowResponses: true,
    },
    // Runs tasks: reads topics, writes serving tables, checkpoints, dead letters, late data,
    // outputs and topic sinks (repartition hops included); talks to the coordinator only.
    worker: {
      publish: {
        allow: [
          ...STREAM_READ,
          // The job streams (KAPPA_DLQ/LATE/OUT), checkpoint buckets and serving tables' buckets.
          '$JS.API.STREAM.CREATE.*',
          '$JS.API.STREAM.UPDATE.*',
          `$JS.API.STREAM.PURGE.OBJ_${buckets.checkpointData}`,
          '$KV.*.>',
          `$O.${buckets.checkpointData}.>`,
          subjects.deadLetter('*', '*'),
          subjects.lateData('*', '*'),
          subjects.output('*', '*'),
          subjects.workerToCoordinator,
          ANY_TOPIC,
        ],
        deny: [ADMIN, subjects.coordinatorToWorker('*'), ...CONTROL_BUCKETS, INBOX],
      },
      subscribe: { allow: [subjects.coordinatorToWorker('*'), INBOX] },
    },
    // Publishes events to topics (a JetStream publish: the PubAck comes back on an inbox) after
    // looking the topic up; reads nothing else.
    producer: {
      publish: {
        allow: [
          ...topics,
          '$JS.API.INFO',
          '$JS.API.STREAM.INFO.*',
          `$JS.API.DIRECT.GET.KV_${buckets.topics}.>`,
          `$JS.API.STREAM.MSG.GET.KV_${buckets.topics}`,
        ],
        deny: options.topics?.length ? [] : NOT_A_TOPIC,
      },
      subscribe: { allow: [INBOX] },
    },
    // Apps: read serving tables and aliases (and stream listings to find a table); write nothing.
    reader: {
      publish: { allow: [...STREAM_READ, '$JS.API.STREAM.NAMES', '$JS.API.STREAM.LIST'] },
      subscribe: { allow: [INBOX] },
    },
    // The CLI's admin verbs, topics (create, describe, delete) and anything an operator reads.
    admin: {
      publish: { allow: [ADMIN, '$JS.API.>', FLOW_CONTROL, `$KV.${buckets.topics}.>`] },
      subscribe: { allow: [INBOX] },
    },
  };
}

function list(subjectList: readonly string[]): string {
  return `[${subjectList.map((subject) => JSON.stringify(subject)).join(', ')}]`;
}

function direction(rule: { allow: string[]; deny?: string[] }): string {
  return rule.deny?.length
    ? `{ allow: ${list(rule.allow)}, deny: ${list(rule.deny)} }`
    : `{ allow: ${list(rule.allow)} }`;
}

/**
 * The nats-server configuration of the roles: one nkey user per role with its permissions, in the
 * server's `authorization` block, or in an account of that name (with JetStream) when given.
 */
export function authorizationBlock(
  users: Record<Role, string>,
  options: RoleOptions & { account?: string } = {},
): string {
  const permissions = rolePermissions(options);
  const entries: string[] = [];
  for (const role of ROLES) {
    const role_ = permissions[role];
    entries.push(
      `    # ${role}`,
      `    { nkey: ${users[role]}, permissions: {`,
      `        publish: ${direction(role_.publish)}`,
      `        subscribe: ${direction(role_.subscribe)}`,
      ...(role_.allowResponses ? ['        allow_responses: true'] : []),
      '    } }',
    );
  }
  const header = '# Kappa roles (kappa auth init): coordinator, worker, producer, reader, admin.';
  if (options.account === undefined)
    return [header, 'authorization {', '  users = [', ...entries, '  ]', '}', ''].join('\n');
  return [
    header,
    'accounts {',
    `  ${JSON.stringify(options.account)} {`,
    '    jetstream: enabled',
    '    users = [',
    ...entries.map((line) => `  ${line}`),
    '    ]',
    '  }',
    '}',
    '',
  ].join('\n');
}
