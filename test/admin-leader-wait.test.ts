// Admin commands wait for a coordinator leader (`--leader-timeout`, default 15 s) instead of
// failing while one is being elected: right after a coordinator is spawned, and while a coordinator
// restarted after a crash waits out the dead one's lease. Without any coordinator they give up
// after the timeout with one line and exit 1. Real nats-server, real `kappa` processes.
import { expect, it } from 'vitest';
import { createTopic } from '../client/index.js';
import { kappa, KappaProcess } from './harness/cli.js';
import { useNatsServer } from './harness/use-nats.js';

const nats = useNatsServer({ per: 'test' });

function coordinator(id: string, leaseTtl = '5s'): KappaProcess {
  return new KappaProcess(['coordinator', '--id', id, '--nats', nats.url, '--http-port', '0', '--lease-ttl', leaseTtl]);
}

it('kappa start run right after a coordinator is spawned waits for its election and exits 0', async () => {
  await createTopic(nats.nc, { name: 'clicks', partitions: 2 });
  const spawned = coordinator('c1');
  // No wait for the coordinator's start-up, subscription or election: the command does it.
  const started = await kappa(['start', 'clicks', '--version', 'v1', '--topic', 'clicks', '--nats', nats.url]);
  expect(started.code, started.stderr + spawned.logs.slice(-2000)).toBe(0);
  expect(started.stdout).toMatch(/^clicks v1: .* on topic clicks \(2 partitions\)/);
  expect(await spawned.stop()).toBe(0);
});

it('waits while a coordinator restarted after a crash takes the dead leader’s lease over', async () => {
  const crashed = coordinator('crashed');
  await crashed.waitForLog(/leading: loading cluster state/);
  await crashed.kill();
  // The restarted replica may lead only once the dead one's 5 s lease has run out: longer than one
  // request's 3 s timeout, so only a command that asks again gets an answer.
  const restarted = coordinator('restarted');
  const askedAtMs = Date.now();
  const status = await kappa(['status', '--nats', nats.url]);
  expect(status.code, status.stderr + restarted.logs.slice(-2000)).toBe(0);
  expect(status.stdout).toMatch(/^leader: restarted \(fencing token \d+\)/);
  expect(Date.now() - askedAtMs).toBeGreaterThan(3_000);
  expect(await restarted.stop()).toBe(0);
});

it('gives up after --leader-timeout when no coordinator runs: one line, exit 1', async () => {
  const askedAtMs = Date.now();
  const result = await kappa(['stop', 'clicks', '--version', 'v1', '--leader-timeout', '2s', '--nats', nats.url]);
  const elapsedMs = Date.now() - askedAtMs;
  expect(result.code).toBe(1);
  expect(result.stderr.trim().split('\n')).toEqual([
    expect.stringMatching(
      /^kappa: no coordinator leader answered 'stop' in \d+ s \(--leader-timeout 2s; is 'kappa coordinator' running\?\)$/,
    ),
  ]);
  expect(elapsedMs).toBeGreaterThanOrEqual(2_000);
  expect(elapsedMs).toBeLessThan(10_000);
});
