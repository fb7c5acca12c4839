// The HTTP side: every REST call goes through openapi-fetch, typed by the
// operations generated from docs/openapi.yaml (src/openapi.ts). Both modes
// serve the same routes under their own prefix, so the routes are written
// without it and the mode's prefix is part of the base URL.
import createClient, { type Client, type MaybeOptionalInit } from "openapi-fetch";
import type { HttpMethod, PathsWithMethod, SuccessResponseJSON } from "openapi-typescript-helpers";

import { StreamboardError } from "./errors.js";
import type { paths } from "./openapi.js";
import type { Mode } from "./types.js";

/** The `/api` routes without their prefix. `/quick` serves the same routes
 * with the same shapes, less what only `/api` has (owner, members,
 * `created_by`), which the schemas mark optional. */
export type Routes = { [R in keyof paths as R extends `/api${infer Rest}` ? Rest : never]: paths[R] };

/** What `fetch` the SDK needs: openapi-fetch calls it with a `Request`. */
export type FetchLike = (input: Request) => Promise<Response>;

/** A call's answer: its JSON body and the board version it reflects (ETag). */
export interface Answer<T> {
  body: T;
  version: number | null;
}

export type RouteOf<M extends HttpMethod> = PathsWithMethod<Routes, M>;
export type InitOf<M extends HttpMethod, R extends RouteOf<M>> = MaybeOptionalInit<Routes[R], M>;
export type BodyOf<M extends HttpMethod, R extends RouteOf<M>> = SuccessResponseJSON<Routes[R][M] & Record<string | number, any>>;

export class Rest {
  private readonly http: Client<Routes>;

  constructor(baseUrl: string, mode: Mode, fetchImpl: FetchLike, token: () => string | undefined) {
    // Called through a closure so a `fetch` replaced later (tests, polyfills) is used.
    this.http = createClient<Routes>({ baseUrl: `${baseUrl}/${mode}`, fetch: (request) => fetchImpl(request) });
    this.http.use({
      onRequest: ({ request }) => {
        const bearer = token();
        if (bearer) request.headers.set("authorization", `Bearer ${bearer}`);
        request.headers.set("accept", "application/json");
        return request;
      },
    });
  }

  /** One call; a refusal (4xx/5xx) throws a `StreamboardError`, an
   * unreachable server the platform's error. */
  async call<M extends HttpMethod, R extends RouteOf<M>>(method: M, route: R, init?: InitOf<M, R>): Promise<Answer<BodyOf<M, R>>> {
    const { data, error, response } = await this.http.request(method, route, init as never);
    if (!response.ok) throw refusal(response, error);
    const etag = response.headers.get("etag");
    return { body: data as BodyOf<M, R>, version: etag ? Number(etag.replace(/\D/g, "")) : null };
  }
}

function refusal(response: Response, body: unknown): StreamboardError {
  const error = (body as { error?: { code?: string; message?: string; details?: any } } | undefined)?.error;
  const text = typeof body === "string" && body ? body : response.statusText;
  return new StreamboardError(response.status, error?.code ?? `http_${response.status}`, error?.message ?? text, error?.details);
}
