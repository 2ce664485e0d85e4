"""Numeric ids (u64 in the game clients' types). Random rather than sequential, so
they reveal neither counts nor neighbours, and below 2**53 so JavaScript clients read
them exactly. Collisions are refused by the store and retried."""

import secrets

MAX_ID = 2**53 - 1


def new_id() -> int:
    return secrets.randbelow(MAX_ID) + 1
