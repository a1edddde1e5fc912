"""Which counts a login attempt falls under, and how long a failed one waits for its answer.

Failures are counted under three keys: the account, the client address, and the pair of the two.
Only the pair is ever blocked, so that nobody can lock a real user out by failing for that user name
from elsewhere, or lock out everyone behind one address (a clinic's NAT, a proxy) by failing with
many names; the account-wide and address-wide counts only slow their failures down.
"""

from dataclasses import dataclass

# Seconds of the first delayed answer; each further failure doubles it, up to the configured cap.
FIRST_DELAY_SECONDS = 1.0


@dataclass(frozen=True)
class ThrottleKeys:
    account: str
    address: str
    pair: str


def throttle_keys(username: str, client_address: str | None) -> ThrottleKeys:
    """The keys of one attempt. An address holds no "|", so a pair key names one pair only."""
    address = client_address or "-"
    return ThrottleKeys(
        account=f"account:{username}", address=f"address:{address}", pair=f"pair:{username}|{address}"
    )


def failure_delay(
    *,
    pair_failures: int,
    account_failures: int,
    address_failures: int,
    slow_after: int,
    max_delay_seconds: float,
) -> float:
    """Seconds to hold the answer to a failed attempt, given the counts that include it.

    The pair's second failure waits 1 s, its third 2 s, and so on; past ``slow_after`` failures for
    the account (from all addresses) or from the address (for all names), each further failure also
    doubles, whatever the pair. Capped, so that the answer still comes.
    """
    level = max(pair_failures - 1, account_failures - slow_after, address_failures - slow_after)
    if level <= 0:
        return 0.0
    return min(max_delay_seconds, FIRST_DELAY_SECONDS * 2 ** min(level - 1, 30))
