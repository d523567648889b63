// What every Kappa process needs at run time (DESIGN.md: runtime/): the NATS connection, the
// HTTP endpoints (/metrics, /healthz, /readyz), the logger and the settings read from the
// environment. protocol/ stays pure wire code; this folder does the I/O.
export * from './connection.js';
export * from './logger.js';
export * from './process-endpoints.js';
export * from './replicas.js';
export * from './table-settings.js';
