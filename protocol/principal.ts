// Who sent an admin request: NATS headers the CLI sets on every `kappa.admin.<verb>` request and
// the coordinator writes into its audit log line. The server's permissions decide who may send one
// at all (only the admin role: cli/nats-roles.ts); these say which credential and which person did.
export const principalHeaders = {
  /** The credential's name: the role file's name (`admin` for admin.nk), the NATS user, or 'anonymous'. */
  name: 'Kappa-Principal',
  /** The public key of the nkey the request was sent with, when it was one (`U…`). */
  key: 'Kappa-Principal-Key',
  /** The operating-system user and host the CLI ran as (`alice@laptop`). */
  origin: 'Kappa-Origin',
} as const;
