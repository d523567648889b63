// Wire protocol version. A reader accepts any minor version of its own major version (new
// optional fields are ignored) and refuses a newer major version with a ProtocolError.
export const PROTOCOL_MAJOR = 1;
export const PROTOCOL_MINOR = 3;
