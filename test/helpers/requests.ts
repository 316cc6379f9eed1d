// A planned build request narrowed to one builder (the request is a union discriminated by `builder`): fails the
// test when the plan chose another builder.
import { strict as assert } from "node:assert";
import type { PlannedRequest } from "../../lib/stages/pipeline";

export function requestFor<B extends PlannedRequest["builder"]>(request: PlannedRequest, builder: B): Extract<PlannedRequest, { builder: B }> {
    assert.equal(request.builder, builder, `the plan chose the ${request.builder} builder`);
    return request as Extract<PlannedRequest, { builder: B }>;
}
