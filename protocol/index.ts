export * from './errors.js';
export * from './event.js';
export * from './messages.js';
export * from './names.js';
export * from './partition.js';
export * from './version.js';
export * from './connection.js';
export * from './serving-table.js';
