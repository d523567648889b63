// A CA and certificates signed by it, made with openssl, for tests that run NATS over TLS: ca.pem,
// server.pem/server-key.pem (127.0.0.1, localhost and the names the prod manifests use) and
// client.pem/client-key.pem. Named as cert-manager names a Secret's keys too (ca.crt, tls.crt,
// tls.key: the server's), so a config written for the manifests' mounts reads them.
import { execFileSync } from 'node:child_process';
import { copyFileSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

export function makeTestCertificates(into: string): void {
  mkdirSync(into, { recursive: true });
  const openssl = (...args: string[]) => execFileSync('openssl', args, { cwd: into, stdio: 'pipe' });
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  openssl('req', '-x509', ...ec, '-keyout', 'ca-key.pem', '-out', 'ca.pem', '-subj', '/CN=kappa-test-ca', '-days', '2');
  writeFileSync(
    join(into, 'server.ext'),
    'subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:kappa-nats,DNS:*.kappa-nats-headless\n' +
      'extendedKeyUsage=serverAuth,clientAuth\n',
  );
  writeFileSync(join(into, 'client.ext'), 'extendedKeyUsage=clientAuth\n');
  for (const [name, subject] of [
    ['server', '/CN=localhost'],
    ['client', '/CN=kappa-client'],
  ] as const) {
    openssl('req', ...ec, '-keyout', `${name}-key.pem`, '-out', `${name}.csr`, '-subj', subject);
    openssl(
      'x509',
      '-req',
      '-in',
      `${name}.csr`,
      '-CA',
      'ca.pem',
      '-CAkey',
      'ca-key.pem',
      '-CAcreateserial',
      '-out',
      `${name}.pem`,
      '-days',
      '2',
      '-extfile',
      `${name}.ext`,
    );
  }
  copyFileSync(join(into, 'ca.pem'), join(into, 'ca.crt'));
  copyFileSync(join(into, 'server.pem'), join(into, 'tls.crt'));
  copyFileSync(join(into, 'server-key.pem'), join(into, 'tls.key'));
}
