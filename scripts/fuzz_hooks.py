"""Schemathesis hooks for scripts/fuzz.sh: known failures fixed on other branches.

Each filter drops one failure only when its exact signature matches, so
anything else the fuzzer finds still fails the run. Delete a filter once its
fix is merged.
"""

import schemathesis


def _non_ascii_header(case) -> bool:
    return any(not str(value).isascii() for value in (case.headers or {}).values())


@schemathesis.hook
def filter_failure(ctx, failure, case, response):
    # Non-ASCII header values (If-Match, Idempotency-Key) are answered 405
    # instead of 400: being fixed on the non-ASCII headers branch.
    if response.status_code == 405 and _non_ascii_header(case):
        return False
    return True
