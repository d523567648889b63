// The client library: topics and the producer. Usable without the CLI.
export * from './topics.js';
export * from './producer.js';
export * from './nats-retry.js';
export * from './json-events.js';
