import { createRoute, z } from "@hono/zod-openapi";
import { type HeaderDocs, internalError } from "../schemas.js";

/** The definition of a GET that serves one file (a page, a stylesheet, this document): open, takes nothing. */
export function fileRoute(o: {
  path: string;
  operationId: string;
  tag: string;
  summary: string;
  description?: string;
  type: string;
  headers?: HeaderDocs;
}) {
  return createRoute({
    method: "get",
    path: o.path,
    operationId: o.operationId,
    tags: [o.tag],
    summary: o.summary,
    ...(o.description ? { description: o.description } : {}),
    responses: {
      200: { description: o.summary, headers: o.headers ?? {}, content: { [o.type]: { schema: z.string() } } },
      500: internalError,
    },
  });
}
