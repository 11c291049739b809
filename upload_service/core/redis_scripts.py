"""The Lua scripts of the service's Redis locks, in one place.

Both kinds of lock (a tus upload's, `core.locks`; a pipeline run's,
`processors.joblock`) hold a key whose value is the holder's random token, and
touch it again only through these scripts: a holder whose key lapsed and passed
to someone else must never renew or delete the new holder's lock, and the check
and the change have to be one step in Redis.

Each client learns them once: redis-py's `register_script` (EVALSHA, loading the
script when Redis answers NOSCRIPT), cached per client here; the fast path's wire
client runs them by the same SHA with the same fallback.
"""

from __future__ import annotations

import hashlib
import threading
import weakref
from dataclasses import dataclass, field

from redis import Redis
from redis.asyncio import Redis as AsyncRedis
from redis.commands.core import AsyncScript, Script


@dataclass(frozen=True)
class LuaScript:
    """A script's source and the SHA1 EVALSHA knows it by."""

    source: str
    sha: str = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "sha", hashlib.sha1(self.source.encode()).hexdigest())


# KEYS[1]: the lock's key; ARGV[1]: the holder's token. 1 when deleted, 0 when not ours.
RELEASE = LuaScript("""
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end
return 0
""")
# ARGV[2]: the new TTL in milliseconds. 1 when extended, 0 when the lock is not ours.
RENEW = LuaScript("""
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) end
return 0
""")


# Compare-and-set of a tus upload's lock: KEYS[1] the lock, ARGV[1] the value seen
# (a dead holder's, or our own before a re-stamp), ARGV[2] the new value, ARGV[3]
# the TTL in milliseconds. 1 when the lock now holds ARGV[2]: finding it there
# already counts, so that a call sent again after a lost connection is no failure.
TAKE_OVER = LuaScript("""
local current = redis.call('get', KEYS[1])
if current == ARGV[1] or current == ARGV[2] then
  redis.call('set', KEYS[1], ARGV[2], 'PX', ARGV[3])
  return 1
end
return 0
""")


@dataclass(frozen=True)
class LockScripts:
    release: Script
    renew: Script


@dataclass(frozen=True)
class AsyncLockScripts:
    release: AsyncScript
    renew: AsyncScript
    take_over: AsyncScript


_registered: weakref.WeakKeyDictionary[object, object] = weakref.WeakKeyDictionary()
_registering = threading.Lock()


def lock_scripts(client: Redis) -> LockScripts:
    """The lock scripts registered with `client`: once per client, however many locks."""
    with _registering:
        scripts = _registered.get(client)
        if not isinstance(scripts, LockScripts):
            scripts = _registered[client] = LockScripts(
                client.register_script(RELEASE.source), client.register_script(RENEW.source)
            )
        return scripts


def async_lock_scripts(client: AsyncRedis) -> AsyncLockScripts:
    """Like lock_scripts, for redis-py's asyncio client."""
    with _registering:
        scripts = _registered.get(client)
        if not isinstance(scripts, AsyncLockScripts):
            scripts = _registered[client] = AsyncLockScripts(
                client.register_script(RELEASE.source),
                client.register_script(RENEW.source),
                client.register_script(TAKE_OVER.source),
            )
        return scripts
