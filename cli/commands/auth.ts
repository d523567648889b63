// `kappa auth init --dir DIR`: the NATS credentials of Kappa's roles (cli/nats-roles.ts). One user
// nkey per role, made with the NATS libraries: its seed in DIR/<role>.nk (mode 0600, what a
// process names with --nkey-seed-file or NATS_NKEY_SEED_FILE) and its public key, with the role's
// publish/subscribe permissions, in DIR/auth.conf, the nats-server `authorization` block to include
// in the server's configuration. No password exists to leak: the server holds only public keys.
import { chmodSync, existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { nkeys } from '@nats-io/transport-node';
import type { Command } from 'commander';
import { assertName, ConfigError } from '../../protocol/index.js';
import { authorizationBlock, ROLES, type Role } from '../nats-roles.js';

interface AuthInitFlags {
  dir: string;
  force?: boolean;
  topic?: string[];
  account?: string;
}

export function registerAuth(program: Command): void {
  const auth = program.command('auth').description("NATS credentials for Kappa's roles");
  auth
    .command('init')
    .description(
      `write one nkey seed per role (${ROLES.join(', ')}) as DIR/<role>.nk (0600) and the nats-server authorization block as DIR/auth.conf`,
    )
    .requiredOption('--dir <dir>', 'directory to write the seeds and auth.conf into (created 0700)')
    .option('--force', 'replace seeds already in DIR (every process must then get the new ones)')
    .option(
      '--topic <topic>',
      'a topic producers may publish to (repeatable); none: any topic',
      (topic: string, previous: string[] = []) => [...previous, topic],
    )
    .option('--account <name>', 'put the users in this JetStream account instead of the default one')
    .action((flags: AuthInitFlags) => {
      for (const topic of flags.topic ?? []) assertName('topic', topic);
      if (flags.account !== undefined && !/^[A-Za-z0-9_-]{1,64}$/.test(flags.account))
        throw new ConfigError(
          `account name ${JSON.stringify(flags.account)} is not valid: expected letters, digits, '_' or '-'`,
        );
      mkdirSync(flags.dir, { recursive: true, mode: 0o700 });
      const existing = ROLES.filter((role) => existsSync(seedFile(flags.dir, role)));
      if (existing.length > 0 && !flags.force)
        throw new ConfigError(
          `${flags.dir} already holds seeds for ${existing.join(', ')}: remove them or pass --force to replace them`,
        );
      const users = {} as Record<Role, string>;
      for (const role of ROLES) {
        const user = nkeys.createUser();
        const file = seedFile(flags.dir, role);
        writeFileSync(file, `${new TextDecoder().decode(user.getSeed())}\n`, { mode: 0o600 });
        // writeFileSync's mode applies only to a file it creates; --force may replace one.
        chmodSync(file, 0o600);
        users[role] = user.getPublicKey();
      }
      const conf = join(flags.dir, 'auth.conf');
      writeFileSync(conf, authorizationBlock(users, { topics: flags.topic, account: flags.account }), { mode: 0o644 });
      for (const role of ROLES) process.stdout.write(`${role}\t${users[role]}\t${seedFile(flags.dir, role)}\n`);
      process.stdout.write(`authorization block: ${conf} (include it in nats-server.conf)\n`);
    });
}

export function seedFile(dir: string, role: Role): string {
  return join(dir, `${role}.nk`);
}
