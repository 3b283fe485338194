import type { z } from "@hono/zod-openapi";
import { describe, expectTypeOf, it } from "vitest";
import type * as client from "../../src/client/index.js";
import type * as schemas from "../../src/http/schemas.js";
import type { PROBLEMS } from "../../src/problems.js";

// The client's answer types are written out by hand so its published .d.ts needs nothing
// from the server; these are checked by the type checker (`npm run typecheck`): an
// answer shape changed on one side only fails here.
type Out<T extends z.ZodType> = z.output<T>;
type Base = Out<typeof schemas.ProblemBody>;

describe("the client's types are the server's schemas", () => {
  it("answers", () => {
    expectTypeOf<client.Grant>().toEqualTypeOf<Out<typeof schemas.Grant>>();
    expectTypeOf<client.Permit>().toEqualTypeOf<Out<typeof schemas.SemaphoreGrant>>();
    expectTypeOf<client.Ticket>().toEqualTypeOf<Out<typeof schemas.TicketAnswer>>();
    expectTypeOf<client.LockInfo>().toEqualTypeOf<Out<typeof schemas.LockInfo>>();
    expectTypeOf<client.LockList>().toEqualTypeOf<Out<typeof schemas.LockList>>();
    expectTypeOf<client.SemaphoreHolder>().toEqualTypeOf<Out<typeof schemas.SemaphoreHolder>>();
    expectTypeOf<client.SemaphoreInfo>().toEqualTypeOf<Out<typeof schemas.SemaphoreInfo>>();
    expectTypeOf<client.SemaphoreList>().toEqualTypeOf<Out<typeof schemas.SemaphoreList>>();
    expectTypeOf<client.Fence>().toEqualTypeOf<Out<typeof schemas.FenceAnswer>>();
    expectTypeOf<client.State>().toEqualTypeOf<Out<typeof schemas.StateAnswer>>();
  });

  it("problems", () => {
    expectTypeOf<client.ProblemCode>().toEqualTypeOf<keyof typeof PROBLEMS>();
    expectTypeOf<client.Holder>().toEqualTypeOf<NonNullable<Out<typeof schemas.LockHeldProblem>["holder"]>>();
    // A problem is the common body plus every extension member, each optional.
    type Extensions = Omit<Out<typeof schemas.InvalidRequestProblem>, keyof Base> &
      Omit<Out<typeof schemas.LockHeldProblem>, keyof Base> &
      Omit<Out<typeof schemas.LimitMismatchProblem>, keyof Base> &
      Omit<Out<typeof schemas.FenceStaleProblem>, keyof Base>;
    expectTypeOf<Pick<client.Problem, keyof Base>>().toEqualTypeOf<Base>();
    expectTypeOf<Pick<client.Problem, keyof Extensions>>().toEqualTypeOf<Partial<Extensions>>();
  });
});
