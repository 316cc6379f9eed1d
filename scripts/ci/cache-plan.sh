#!/usr/bin/env bash
# The `plan` job of up-stack.yml: which images the stack's build-cache matrix builds (scripts/ci/build-cache.sh, one
# job each, side by side on the lab's runners), as the JSON list the matrix takes: every image the stack builds itself
# when its factory:buildCache pushes, none otherwise (the matrix is skipped and `pulumi up` builds as it always did).
# Reads only the checkout: no backend, no token.
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"

ci_require_stack
ci_setup --lab
images=$(node -r ./scripts/require-ts-cached.js bin/list-images.ts --stack "$STACK" --build-cache) ||
  ci_fail "could not read the images of stack $STACK (the lines above say why)"
ci_say "build-cache matrix of $STACK: $images"
ci_output images "$images"
