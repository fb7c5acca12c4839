import type { ErrorBody } from "./types.js";

/** A refusal from the server: the contract's `{"error": {code, message, details}}`
 * with the HTTP status (412, 403, 422, ...). */
export class StreamboardError extends Error {
  readonly status: number;
  readonly code: string;
  readonly details: ErrorBody["error"]["details"] | undefined;

  constructor(status: number, code: string, message: string, details?: ErrorBody["error"]["details"]) {
    super(message);
    this.name = "StreamboardError";
    this.status = status;
    this.code = code;
    this.details = details;
  }
}

/** The server could not be reached (or answered 502/503/504): worth retrying. */
export function isTransient(error: unknown): boolean {
  if (error instanceof StreamboardError) return [502, 503, 504].includes(error.status);
  return true;
}
