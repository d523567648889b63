import { connect } from '@nats-io/transport-node';
import { jetstreamManager } from '@nats-io/jetstream';
import { afterAll, expect, it } from 'vitest';
import { NatsCluster, startServer, stopAllServers } from './harness/nats-server.js';

afterAll(() => stopAllServers());

it('restarts a killed server on the same port with its JetStream store intact', async () => {
  const server = await startServer();
  const nc = await connect({ servers: server.url });
  const jsm = await jetstreamManager(nc);
  await jsm.streams.add({ name: 'H', subjects: ['h.>'] });
  await nc.close();
  const port = server.clientPort;
  await server.kill();
  expect(server.running).toBe(false);
  await server.restart();
  expect(server.clientPort).toBe(port);
  const again = await connect({ servers: server.url });
  const names = await (await jetstreamManager(again)).streams.names().next();
  expect(names).toContain('H');
  await again.close();
  await server.close();
});

it('forms a 3-node JetStream cluster that keeps an R3 stream through the loss of one node', async () => {
  const cluster = await NatsCluster.start(3);
  const nc = await connect({ servers: cluster.urls });
  const jsm = await jetstreamManager(nc);
  await jsm.streams.add({ name: 'R3', subjects: ['r3.>'], num_replicas: 3 });
  const info = await jsm.streams.info('R3');
  expect(info.cluster?.replicas?.length).toBe(2);
  await cluster.nodes[2]!.kill();
  const js = jsm.jetstream();
  // While the stream elects a new leader the publish finds no responder; a client retries.
  let ack;
  const deadline = Date.now() + 15_000;
  while (!ack) {
    try {
      ack = await js.publish('r3.a', 'x', { msgID: 'first', timeout: 2_000 });
    } catch (error) {
      if (Date.now() > deadline) throw error;
      await new Promise((resolve) => setTimeout(resolve, 250));
    }
  }
  expect(ack.seq).toBe(1);
  await cluster.nodes[2]!.restart();
  await nc.close();
  await cluster.stopAll();
});
