"""`RedisStateStore`: the `StateStore` contract shared by every process that points at one Redis.

Budgets and rate limits outgrow one process the day a second worker starts: LiteLLM's pod-local
counters let N pods spend N × the limit (litellm#27736, #33325), and re-seeding a shared counter with
INCRBYFLOAT inflated spend (#28247). Here every step that reads and writes a ledger is one Lua
script, atomic on the server, one round trip:

- amounts are integer nano-dollars (whole units on windowed keys: rate limits, where a tpm of 150 M
  tokens in nano-units would pass the 2^53 a Lua number holds exactly), rounded up, so no float
  ever touches money;
- `reserve` holds an amount if spent + reserved + amount ≤ limit and records a *hold* that expires
  after `hold_ttl` seconds: a worker that dies with a hold out does not keep the budget forever (the
  next script on that ledger reclaims it; a late settle of a reclaimed hold still charges, once);
- `settle` / `release` close a reservation by its id exactly once (a retried settle is a no-op);
- windowed keys (rate limits) count a reservation for the window from the moment it was reserved,
  held then settled (a sorted set by reservation time), on the server's clock (or an injected one,
  for tests); its hold ends with its window, when it stops counting.

All keys of one ledger share a hash tag (`{key}`), so they live on one Redis Cluster slot.
A Redis that cannot be reached raises `StateStoreError`, naming the URL (never its password).

Circuit breakers (`resilience.shared_breaker`, transcribed into Lua): a hash `{failures, open_until}`
per breaker and, beside it under the same hash tag, the half-open probe's slot, taken with
`SET NX PX` (one probe for the whole fleet, freed by itself after the probe's timeout).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from decimal import ROUND_CEILING, Decimal
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import anyio

from amaos_llm.errors import ConfigError, StateStoreError
from amaos_llm.state import BreakerOutcome, BreakerView, Ledger, Reservation, frees_in

NANO = Decimal("1e-9")
HOLD_TTL = 900.0  # s a reservation may stay open before it counts as a dead worker's
BREAKER_TTL = 86_400.0  # s a breaker's record outlives its last failure (a day-old count is history)
WAIT_POLL = 0.02  # s between looks while waiting for a reservation on a key to close

# Reclaim expired holds (into :expired, so a late settle still charges once; a windowed key's hold
# ends with its window, when it stops counting: nothing to keep) and drop windowed spending older
# than the window; then the ledger's counters. KEYS: ledger, open, holds, hist, expired; ARGV[1]:
# now (ms).
_HOUSEKEEPING = """
local t = redis.call('TIME')
local now = ARGV[1] ~= '' and tonumber(ARGV[1]) or (tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000))
local window = tonumber(redis.call('HGET', KEYS[1], 'window_ms') or '-1')
local dead = redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', now)
for _, id in ipairs(dead) do
  local v = redis.call('HGET', KEYS[2], id)
  if v then
    local amount = string.match(v, '^(%d+):')
    redis.call('HDEL', KEYS[2], id)
    if window < 0 then redis.call('HSET', KEYS[5], id, v) end
    redis.call('HINCRBY', KEYS[1], 'reserved', -tonumber(amount))
  end
  redis.call('ZREM', KEYS[3], id)
end
if window >= 0 then
  local old = redis.call('ZRANGEBYSCORE', KEYS[4], '-inf', now - window)
  for _, m in ipairs(old) do
    redis.call('HINCRBY', KEYS[1], 'spent', -tonumber(string.match(m, ':(%d+)$')))
  end
  redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', now - window)
end
"""

# ARGV: now ms, amount, limit, hold ttl ms, window ms (-1: none)
_RESERVE = """
if tonumber(ARGV[5]) >= 0 then redis.call('HSET', KEYS[1], 'window_ms', ARGV[5]) end
""" + _HOUSEKEEPING + """
local spent = tonumber(redis.call('HGET', KEYS[1], 'spent') or '0')
local reserved = tonumber(redis.call('HGET', KEYS[1], 'reserved') or '0')
local amount = tonumber(ARGV[2])
if spent + reserved + amount > tonumber(ARGV[3]) then return {0, now} end
local id = redis.call('HINCRBY', KEYS[1], 'next_id', 1)
redis.call('HSET', KEYS[2], id, ARGV[2] .. ':' .. now)
redis.call('HINCRBY', KEYS[1], 'reserved', amount)
redis.call('ZADD', KEYS[3], now + (window >= 0 and window or tonumber(ARGV[4])), id)
return {id, now}
"""

# ARGV: now ms, id, actual (-1: release)
_CLOSE = _HOUSEKEEPING + """
local id = ARGV[2]
local v = redis.call('HGET', KEYS[2], id)
local open = true
if not v then
  v = redis.call('HGET', KEYS[5], id)
  open = false
  if not v then return 0 end
  redis.call('HDEL', KEYS[5], id)
else
  redis.call('HDEL', KEYS[2], id)
  redis.call('ZREM', KEYS[3], id)
end
local amount, at = string.match(v, '^(%d+):(%d+)$')
if open then redis.call('HINCRBY', KEYS[1], 'reserved', -tonumber(amount)) end
local actual = tonumber(ARGV[3])
if actual >= 0 then
  redis.call('HINCRBY', KEYS[1], 'spent', actual)
  if tonumber(redis.call('HGET', KEYS[1], 'window_ms') or '-1') >= 0 then
    redis.call('ZADD', KEYS[4], tonumber(at), id .. ':' .. ARGV[3])
  end
end
redis.call('HINCRBY', KEYS[1], 'closes', 1)
return 1
"""

# ARGV: now ms
_USAGE = _HOUSEKEEPING + """
return {redis.call('HGET', KEYS[1], 'spent') or '0', redis.call('HGET', KEYS[1], 'reserved') or '0',
        redis.call('HGET', KEYS[1], 'closes') or '0', window}
"""

# What a windowed key counts: {window ms (-1: none), {ms until it leaves the window, amount}...}, the
# open holds (a hold's score is when its window ends) and the settled amounts (scored by when they
# were reserved). ARGV: now ms
_COUNTED = _HOUSEKEEPING + """
local out = {window}
if window < 0 then return out end
local holds = redis.call('ZRANGE', KEYS[3], 0, -1, 'WITHSCORES')
for i = 1, #holds, 2 do
  local v = redis.call('HGET', KEYS[2], holds[i])
  if v then
    out[#out + 1] = {tonumber(holds[i + 1]) - now, tonumber(string.match(v, '^(%d+):'))}
  end
end
local hist = redis.call('ZRANGE', KEYS[4], 0, -1, 'WITHSCORES')
for i = 1, #hist, 2 do
  out[#out + 1] = {tonumber(hist[i + 1]) + window - now, tonumber(string.match(hist[i], ':(%d+)$'))}
end
return out
"""


# A breaker's record: KEYS[1] the hash {failures, open_until (ms)}, KEYS[2] the probe's slot; ARGV[1] now
# (ms). Each script answers view(changed): {failures, ms until it reopens (-1: closed), slot taken, changed}.
_BREAKER_VIEW = """
local t = redis.call('TIME')
local now = ARGV[1] ~= '' and tonumber(ARGV[1]) or (tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000))
local function view(changed)
  local f = redis.call('HMGET', KEYS[1], 'failures', 'open_until')
  local left = -1
  if f[2] then left = math.max(0, tonumber(f[2]) - now) end
  return {tonumber(f[1] or '0'), left, redis.call('EXISTS', KEYS[2]), changed}
end
"""

_BREAKER_STATE = _BREAKER_VIEW + "return view(0)"

# ARGV: now, token, ttl ms
_BREAKER_PROBE = _BREAKER_VIEW + """
local open_until = redis.call('HGET', KEYS[1], 'open_until')
if open_until and now >= tonumber(open_until) and redis.call('SET', KEYS[2], ARGV[2], 'NX', 'PX', ARGV[3]) then
  return view(1)
end
return view(0)
"""

# ARGV: now, outcome, token, threshold, reset ms, force (0/1), the record's ttl ms
_BREAKER_RECORD = _BREAKER_VIEW + """
local outcome, token = ARGV[2], ARGV[3]
if outcome == 'success' then
  redis.call('DEL', KEYS[1], KEYS[2])
  return view(0)
end
if outcome == 'inconclusive' then
  if token ~= '' and redis.call('GET', KEYS[2]) == token then redis.call('DEL', KEYS[2]) end
  return view(0)
end
local failures = redis.call('HINCRBY', KEYS[1], 'failures', 1)
redis.call('PEXPIRE', KEYS[1], ARGV[7])
if redis.call('HEXISTS', KEYS[1], 'open_until') == 1 then
  if token == '' then return view(0) end
elseif failures < tonumber(ARGV[4]) and ARGV[6] ~= '1' then
  return view(0)
end
redis.call('HSET', KEYS[1], 'open_until', string.format('%d', now + tonumber(ARGV[5])))
redis.call('DEL', KEYS[2])
return view(1)
"""


def to_units(amount: Decimal) -> int:
    """Decimal dollars → integer nano-dollars, rounded up (a shared ledger never under-counts)."""
    return int((amount / NANO).to_integral_value(rounding=ROUND_CEILING))


def whole_units(amount: Decimal) -> int:
    """A windowed key's amount (requests, tokens) in whole units, rounded up."""
    return int(amount.to_integral_value(rounding=ROUND_CEILING))


def from_units(units: int | str | bytes) -> Decimal:
    return (Decimal(int(units)) * NANO).normalize() if int(units) else Decimal(0)


def shown_url(url: str) -> str:
    """The URL without its password, for error messages."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def check_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("redis", "rediss", "unix") or (parts.scheme != "unix" and not parts.hostname):
        raise ConfigError(f"state.url: not a Redis URL (redis://host:port/db): {shown_url(url)!r}")
    return url


class RedisStateStore:
    """A `StateStore` on Redis (`redis.asyncio`, a `BlockingConnectionPool`), shared by every
    process using the same URL and `prefix`. `clock` (seconds) replaces the server's clock for
    holds and windows (tests); `hold_ttl`: seconds before an open reservation counts as abandoned."""

    never_suspends = False  # every step is a round trip: callers shield settle/release

    def __init__(
        self, url: str = "redis://127.0.0.1:6379/0", *, prefix: str = "amaos:", hold_ttl: float = HOLD_TTL,
        clock: Callable[[], float] | None = None, max_connections: int = 64, timeout: float = 5.0,
    ) -> None:
        self.url = check_url(url)
        self.prefix = prefix
        self.hold_ttl = hold_ttl
        self._clock = clock
        self._max_connections, self._timeout = max_connections, timeout
        self._client: Any = None
        self._scripts: dict[str, Any] = {}
        self._failures: tuple[type[BaseException], ...] = (OSError,)

    def __repr__(self) -> str:
        return f"RedisStateStore({shown_url(self.url)!r}, prefix={self.prefix!r})"

    def _redis(self) -> Any:
        if self._client is None:
            try:
                import redis.asyncio as aioredis
            except ImportError as exc:
                raise StateStoreError("the Redis state store needs redis-py: pip install 'amaos-llm[redis]'") from exc
            # Blocking: under load the default pool raises when it runs out; this one waits its turn.
            pool = aioredis.BlockingConnectionPool.from_url(
                self.url, max_connections=self._max_connections, timeout=self._timeout,
                socket_connect_timeout=self._timeout, socket_timeout=self._timeout,
            )
            self._client = aioredis.Redis(connection_pool=pool)
            self._failures = (aioredis.RedisError, OSError)
            scripts = (("reserve", _RESERVE), ("close", _CLOSE), ("usage", _USAGE), ("counted", _COUNTED),
                       ("breaker_state", _BREAKER_STATE),
                       ("breaker_probe", _BREAKER_PROBE), ("breaker_record", _BREAKER_RECORD))
            self._scripts = {name: self._client.register_script(body) for name, body in scripts}
        return self._client

    def _keys(self, key: str) -> list[str]:
        base = f"{self.prefix}{{{key}}}"  # the hash tag keeps one ledger on one cluster slot
        return [base, base + ":open", base + ":holds", base + ":hist", base + ":expired"]

    def _now(self) -> str:
        return "" if self._clock is None else str(math.floor(self._clock() * 1000))

    async def _run(self, script: str, key: str, *args: Any, keys: list[str] | None = None) -> Any:
        self._redis()
        try:
            return await self._scripts[script](keys=keys or self._keys(key), args=[self._now(), *args])
        except self._failures as exc:
            raise self._error(exc) from exc

    def _error(self, exc: BaseException) -> StateStoreError:
        return StateStoreError(f"state store {shown_url(self.url)} failed: {type(exc).__name__}: {exc}")

    async def reserve(
        self, key: str, amount: Decimal, limit: Decimal, *, window_s: float | None = None
    ) -> Reservation | None:
        if amount < 0:
            raise ValueError(f"reserve: amount must be >= 0, got {amount}")
        window, units = (-1, to_units) if window_s is None else (math.floor(window_s * 1000), whole_units)
        out = await self._run("reserve", key, units(amount), units(limit), math.floor(self.hold_ttl * 1000), window)
        rid, now = int(out[0]), int(out[1])
        if not rid:
            return None
        return Reservation(key, amount, rid, window_s, now / 1000)

    async def settle(self, reservation: Reservation, actual: Decimal) -> bool:
        if actual < 0:
            raise ValueError(f"settle: actual must be >= 0, got {actual}")
        units = to_units if reservation.window_s is None else whole_units
        return bool(await self._run("close", reservation.key, reservation.id, units(actual)))

    async def release(self, reservation: Reservation) -> bool:
        return bool(await self._run("close", reservation.key, reservation.id, -1))

    async def usage(self, key: str) -> Ledger:
        spent, reserved, _, window = await self._run("usage", key)
        if int(window) >= 0:
            return Ledger(Decimal(int(spent)), Decimal(int(reserved)))
        return Ledger(from_units(spent), from_units(reserved))

    async def frees_in(self, key: str, amount: Decimal, limit: Decimal) -> float | None:
        window, *counted = await self._run("counted", key)
        if int(window) < 0 or amount > limit:
            return None
        leaving = sorted((int(ms), int(units)) for ms, units in counted)
        excess = sum(units for _, units in leaving) + whole_units(amount) - whole_units(limit)
        return frees_in(((ms / 1000, Decimal(units)) for ms, units in leaving), Decimal(excess))

    async def wait(self, key: str, timeout: float) -> bool:
        """Until a reservation on `key` closes (in any process) or `timeout` passes."""
        closes = (await self._run("usage", key))[2]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            await anyio.sleep(min(WAIT_POLL, max(0.0, deadline - time.monotonic())))
            now_closes = (await self._run("usage", key))[2]
            if now_closes != closes:
                return True
        return False

    async def _breaker(self, script: str, key: str, *args: Any) -> BreakerView:
        base = f"{self.prefix}{{{key}}}"  # the record and its probe slot on one cluster slot
        failures, left, probing, changed = await self._run(script, key, *args, keys=[base, base + ":probe"])
        return BreakerView(int(failures), None if left < 0 else left / 1000, bool(probing), bool(changed))

    async def breaker_state(self, key: str) -> BreakerView:
        return await self._breaker("breaker_state", key)

    async def breaker_probe(self, key: str, token: str, ttl: float) -> BreakerView:
        return await self._breaker("breaker_probe", key, token, max(1, math.ceil(ttl * 1000)))

    async def breaker_record(
        self, key: str, outcome: BreakerOutcome, *, token: str = "", threshold: int = 1, reset_after: float = 0.0,
        force: bool = False,
    ) -> BreakerView:
        return await self._breaker("breaker_record", key, outcome, token, threshold,
                                   math.floor(reset_after * 1000), int(force), math.floor(BREAKER_TTL * 1000))

    async def cache_get(self, key: str) -> bytes | None:
        """A shared result-cache entry (`cache.SharedResultCache`), or None."""
        self._redis()
        try:
            return await self._client.get(f"{self.prefix}cache:{key}")  # type: ignore[no-any-return]
        except self._failures as exc:
            raise self._error(exc) from exc

    async def cache_put(self, key: str, data: str, ttl: float) -> None:
        self._redis()
        try:
            await self._client.set(f"{self.prefix}cache:{key}", data, px=max(1, math.floor(ttl * 1000)))
        except self._failures as exc:
            raise self._error(exc) from exc

    async def reset(self, key: str) -> None:
        """Forget a ledger entirely (an explicit `reset_budget()`; joining a ledger never resets it)."""
        self._redis()
        try:
            await self._client.delete(*self._keys(key))
        except self._failures as exc:
            raise self._error(exc) from exc

    async def aclose(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()
            await client.connection_pool.disconnect()
