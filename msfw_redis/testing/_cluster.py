"""A real Redis Cluster and a real Sentinel setup for tests, on free loopback ports.

Both are built from the same ``redis-server`` (or ``valkey-server``) binary that
:class:`~msfw_redis.testing.RedisServer` finds. Every process is stopped by its pid and
every working directory is removed on :meth:`stop`.
"""

from __future__ import annotations

import random
import shutil
import socket
import subprocess
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import redis
from redis.crc import key_slot

from msfw_redis.testing._server import RedisServer, ServerBinary, find_server_binary

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["RedisClusterSetup", "SentinelSetup"]

_SLOTS = 16384


def _binary(binary: ServerBinary | None) -> ServerBinary:
    found = binary or find_server_binary()
    if found is None:
        raise RuntimeError("no redis-server or valkey-server binary found")
    return found


def _cli_for(binary: ServerBinary) -> str | None:
    sibling = Path(binary.path).with_name("valkey-cli" if binary.kind == "valkey" else "redis-cli")
    if sibling.is_file():
        return str(sibling)
    return shutil.which("redis-cli") or shutil.which("valkey-cli")


def _wait(what: str, check: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except (redis.RedisError, OSError):
            pass
        time.sleep(0.05)
    raise RuntimeError(f"timed out after {timeout:.0f}s waiting for {what}")


def _bindable(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _cluster_port(taken: set[int]) -> int:
    """A free port whose cluster-bus port (port + 10000) is free too."""
    rng = random.Random()
    for _ in range(1000):
        port = rng.randrange(20000, 55000)
        if port in taken or port + 10000 in taken:
            continue
        if _bindable(port) and _bindable(port + 10000):
            taken.update((port, port + 10000))
            return port
    raise RuntimeError("no free port pair for a cluster node")


def _conn(port: int) -> Any:
    return redis.Redis(host="127.0.0.1", port=port, socket_timeout=2.0)


def _cmd(port: int, *args: object) -> Any:
    return _conn(port).execute_command(*args)


class RedisClusterSetup:
    """Three masters with one replica each (``--cluster-enabled yes``).

    ``url`` is a ``redis+cluster://`` URL listing every node. :meth:`master_of` and
    :meth:`replica_of` find the servers holding a key's slot, for fault tests.
    """

    def __init__(
        self,
        binary: ServerBinary | None = None,
        *,
        masters: int = 3,
        node_timeout_ms: int = 1000,
    ) -> None:
        self.binary = _binary(binary)
        self.node_timeout_ms = node_timeout_ms
        self.servers: list[RedisServer] = []
        taken: set[int] = set()
        for _ in range(masters * 2):
            server = RedisServer(self.binary, port=_cluster_port(taken))
            server.extra_args = [
                "--cluster-enabled", "yes",
                "--cluster-config-file", str(Path(server.dir) / "nodes.conf"),
                "--cluster-node-timeout", str(node_timeout_ms),
                "--cluster-require-full-coverage", "no",
                "--logfile", str(Path(server.dir) / "server.log"),
            ]  # fmt: skip
            self.servers.append(server)
        self._masters = masters

    @property
    def ports(self) -> list[int]:
        return [s.port for s in self.servers]

    @property
    def url(self) -> str:
        """``redis+cluster://127.0.0.1:p1,127.0.0.1:p2,...``."""
        return "redis+cluster://" + ",".join(f"127.0.0.1:{p}" for p in self.ports)

    def node_url(self, index: int = 0) -> str:
        """A plain ``redis://`` URL of one node (what users must *not* configure)."""
        return f"redis://127.0.0.1:{self.servers[index].port}/0"

    def start(self, timeout: float = 30.0) -> RedisClusterSetup:
        """Start the six nodes, create the cluster and wait until every node says ok."""
        try:
            for server in self.servers:
                server.start()
            cli = _cli_for(self.binary)
            if cli is not None:
                self._create_with_cli(cli)
            else:
                self._create_by_hand()
            self.wait_ok(timeout)
            _wait(
                "every master to have a replica",
                lambda: all(len(row) > 3 for row in self._slot_table()),
                timeout,
            )
        except BaseException:
            self.stop()
            raise
        return self

    def _create_with_cli(self, cli: str) -> None:
        nodes = [f"127.0.0.1:{p}" for p in self.ports]
        done = subprocess.run(
            [cli, "--cluster", "create", *nodes, "--cluster-replicas", "1", "--cluster-yes"],
            capture_output=True,
            timeout=60,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(
                f"redis-cli --cluster create failed: {done.stdout!r} {done.stderr!r}"
            )

    def _create_by_hand(self) -> None:
        first = _conn(self.ports[0])
        for port in self.ports[1:]:
            first.execute_command("CLUSTER", "MEET", "127.0.0.1", port)
        per = _SLOTS // self._masters
        for i in range(self._masters):
            lo = i * per
            hi = _SLOTS - 1 if i == self._masters - 1 else lo + per - 1
            _cmd(self.ports[i], "CLUSTER", "ADDSLOTSRANGE", lo, hi)
        ids = [_cmd(p, "CLUSTER", "MYID") for p in self.ports[: self._masters]]
        for i, port in enumerate(self.ports[self._masters :]):
            master_id = ids[i].decode() if isinstance(ids[i], bytes) else ids[i]

            def knows(port: int = port, master: str = master_id) -> bool:
                return master.encode() in _cmd(port, "CLUSTER", "NODES")

            _wait("the replica to learn its master", knows, 20)
            _cmd(port, "CLUSTER", "REPLICATE", master_id)

    def wait_ok(self, timeout: float = 30.0) -> None:
        """Wait until every running node reports ``cluster_state:ok`` and full coverage."""

        def ok() -> bool:
            for server in self.servers:
                if not server.running:
                    continue
                info = _cmd(server.port, "CLUSTER", "INFO")
                text = info.decode() if isinstance(info, bytes) else str(info)
                if "cluster_state:ok" not in text or "cluster_slots_ok:16384" not in text:
                    return False
            return True

        _wait("cluster_state:ok on every node", ok, timeout)

    def _slot_table(self) -> list[Any]:
        for server in self.servers:
            if server.running:
                try:
                    return list(_cmd(server.port, "CLUSTER", "SLOTS"))
                except (redis.RedisError, OSError):
                    continue
        raise RuntimeError("no cluster node answers CLUSTER SLOTS")

    def _server_on(self, port: int) -> RedisServer:
        for server in self.servers:
            if server.port == port:
                return server
        raise KeyError(port)

    def master_of(self, key: str) -> RedisServer:
        """The server that currently serves ``key``'s slot as master."""
        slot = key_slot(key.encode())
        for lo, hi, master, *_ in self._slot_table():
            if lo <= slot <= hi:
                return self._server_on(int(master[1]))
        raise RuntimeError(f"slot {slot} is not served")

    def replica_of(self, key: str) -> RedisServer:
        """A replica of ``key``'s slot."""
        slot = key_slot(key.encode())
        for lo, hi, _master, *replicas in self._slot_table():
            if lo <= slot <= hi and replicas:
                return self._server_on(int(replicas[0][1]))
        raise RuntimeError(f"slot {slot} has no replica")

    def failover_to(self, replica: RedisServer, timeout: float = 20.0) -> None:
        """Make ``replica`` take over its master's slots (``CLUSTER FAILOVER``)."""
        _cmd(replica.port, "CLUSTER", "FAILOVER")
        _wait(
            "the replica to become master",
            lambda: _conn(replica.port).info("replication").get("role") == "master",
            timeout,
        )
        self.wait_ok(timeout)

    def node_id(self, server: RedisServer) -> str:
        """``server``'s cluster node id (``CLUSTER MYID``)."""
        return _text(_cmd(server.port, "CLUSTER", "MYID"))

    def masters(self) -> list[RedisServer]:
        """The servers that currently serve at least one slot as master."""
        ports = {int(master[1]) for _lo, _hi, master, *_ in self._slot_table()}
        return [s for s in self.servers if s.port in ports]

    def owner_of_slot(self, slot: int) -> RedisServer:
        """The master that serves ``slot`` (0 to 16383), as the slot table says now."""
        for lo, hi, master, *_ in self._slot_table():
            if lo <= slot <= hi:
                return self._server_on(int(master[1]))
        raise RuntimeError(f"slot {slot} is not served")

    def move_slot(
        self,
        slot: int,
        target: RedisServer,
        *,
        batch: int = 100,
        pause: float = 0.0,
        timeout: float = 30.0,
    ) -> int:
        """Move ``slot`` and its keys to the master ``target`` while clients keep running.

        The steps ``redis-cli --cluster reshard`` takes: ``CLUSTER SETSLOT <slot>
        IMPORTING`` on ``target`` and ``MIGRATING`` on the current owner, then
        ``CLUSTER GETKEYSINSLOT`` and ``MIGRATE ... REPLACE KEYS ...`` in batches of
        ``batch`` keys (``pause`` seconds between batches keeps the slot half-migrated for
        longer, so clients meet ASK and TRYAGAIN), then ``CLUSTER SETSLOT <slot> NODE``
        on the target, the old owner and every other master. It returns once every
        running node names ``target`` as the slot's owner and the cluster is ok (each
        wait bounded by ``timeout`` seconds), with the number of keys moved.

        REPLACE is safe: while a slot migrates, a key that still exists on the old owner
        is only ever written there, so the copy being moved is the newest one. A slot
        left half-migrated (a move that was interrupted) is resumed by calling this again.
        """
        if not 0 <= slot < _SLOTS:
            raise ValueError(f"invalid slot {slot!r}: must be 0 to {_SLOTS - 1}")
        if batch < 1:
            raise ValueError(f"invalid batch {batch!r}: must be >= 1")
        source = self.owner_of_slot(slot)
        if source is target:
            raise ValueError(f"slot {slot} is already served by port {target.port}")
        if target not in self.masters():
            raise ValueError(f"port {target.port} is not a master serving slots")
        source_id, target_id = self.node_id(source), self.node_id(target)
        # Importing first: once the source says MIGRATING it sends ASK to the target,
        # which must already accept ASKING for the slot.
        _cmd(target.port, "CLUSTER", "SETSLOT", slot, "IMPORTING", source_id)
        _cmd(source.port, "CLUSTER", "SETSLOT", slot, "MIGRATING", target_id)
        moved = 0
        deadline = time.monotonic() + timeout
        while True:
            keys = list(_cmd(source.port, "CLUSTER", "GETKEYSINSLOT", slot, batch))
            if not keys:
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"timed out after {timeout:.0f}s migrating slot {slot}")
            migrate_ms = max(1000, int(timeout * 1000 / 4))
            _cmd(
                source.port,
                "MIGRATE", "127.0.0.1", target.port, "", 0, migrate_ms, "REPLACE",
                "KEYS", *keys,
            )  # fmt: skip
            moved += len(keys)
            if pause > 0:
                time.sleep(pause)
        # The target first (it then owns the slot and bumps its epoch), then the old
        # owner (which stops sending ASK), then the others, so no node is left pointing
        # clients at a node that no longer has the keys.
        _cmd(target.port, "CLUSTER", "SETSLOT", slot, "NODE", target_id)
        _cmd(source.port, "CLUSTER", "SETSLOT", slot, "NODE", target_id)
        for master in self.masters():
            if master is not target and master is not source and master.running:
                _cmd(master.port, "CLUSTER", "SETSLOT", slot, "NODE", target_id)
        _wait(
            f"every node to name port {target.port} as owner of slot {slot}",
            lambda: _all_nodes_name_owner(self, slot, target.port),
            timeout,
        )
        self.wait_ok(timeout)
        return moved

    def move_slot_of(
        self, key: str, target: RedisServer | None = None, **options: Any
    ) -> RedisServer:
        """Move ``key``'s slot (see :meth:`move_slot`) to ``target``, by default another
        master; returns the new owner."""
        slot = key_slot(key.encode())
        if target is None:
            source = self.owner_of_slot(slot)
            target = next(m for m in self.masters() if m is not source)
        self.move_slot(slot, target, **options)
        return target

    def stop(self) -> None:
        """Stop every node by its pid and remove the working directories."""
        for server in self.servers:
            server.cleanup()

    def __enter__(self) -> RedisClusterSetup:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class SentinelSetup:
    """One primary, one replica and three sentinels monitoring them as ``master_name``.

    ``min_replicas_to_write`` (with a lag bound of ``min_replicas_max_lag`` s) makes the
    primary refuse writes it could not replicate: the setting that bounds split-brain loss.
    """

    def __init__(
        self,
        binary: ServerBinary | None = None,
        *,
        master_name: str = "msfw",
        down_after_ms: int = 1000,
        min_replicas_to_write: int = 0,
        min_replicas_max_lag: int = 10,
    ) -> None:
        self.binary = _binary(binary)
        self.master_name = master_name
        self.down_after_ms = down_after_ms
        durable = [
            "--min-replicas-to-write", str(min_replicas_to_write),
            "--min-replicas-max-lag", str(min_replicas_max_lag),
        ]  # fmt: skip
        self.primary = RedisServer(self.binary, extra_args=durable)
        self.replica = RedisServer(
            self.binary,
            extra_args=[*durable, "--replicaof", "127.0.0.1", str(self.primary.port)],
        )
        self.sentinels: list[RedisServer] = []
        for _ in range(3):
            sentinel = RedisServer(self.binary)
            conf = Path(sentinel.dir) / "sentinel.conf"
            sentinel.config_file = str(conf)
            sentinel.extra_args = ["--sentinel"]
            self.sentinels.append(sentinel)

    @property
    def servers(self) -> list[RedisServer]:
        """The two data servers (primary first at start-up; roles change on failover)."""
        return [self.primary, self.replica]

    @property
    def url(self) -> str:
        """``redis+sentinel://127.0.0.1:s1,...,127.0.0.1:s3/<master_name>/0``."""
        nodes = ",".join(f"127.0.0.1:{s.port}" for s in self.sentinels)
        return f"redis+sentinel://{nodes}/{self.master_name}/0"

    def start(self, timeout: float = 30.0) -> SentinelSetup:
        """Start both data servers and the sentinels, and wait until all agree."""
        try:
            self.primary.start()
            self.replica.start()
            for sentinel in self.sentinels:
                if sentinel.config_file is None:  # made with one in __init__
                    raise RuntimeError("sentinel server has no config file")
                Path(sentinel.config_file).write_text(
                    f"sentinel monitor {self.master_name} 127.0.0.1 {self.primary.port} 2\n"
                    f"sentinel down-after-milliseconds {self.master_name} {self.down_after_ms}\n"
                    f"sentinel failover-timeout {self.master_name} 10000\n"
                    f"sentinel parallel-syncs {self.master_name} 1\n"
                )
                sentinel.start()
            _wait("the replica to sync", self._replica_synced, timeout)
            _wait(
                "every sentinel to see the replica and the others", self._sentinels_ready, timeout
            )
        except BaseException:
            self.stop()
            raise
        return self

    def _replica_synced(self) -> bool:
        info = _conn(self.current_primary().port).info("replication")
        replica = info.get("slave0")
        return isinstance(replica, dict) and replica.get("state") == "online"

    def _sentinels_ready(self) -> bool:
        for sentinel in self.sentinels:
            fields = _conn(sentinel.port).sentinel_master(self.master_name)
            if int(fields["num-slaves"]) < 1 or int(fields["num-other-sentinels"]) < 2:
                return False
        return True

    def current_primary(self) -> RedisServer:
        """The data server the sentinels currently name as primary."""
        for sentinel in self.sentinels:
            if not sentinel.running:
                continue
            try:
                host_port = _cmd(
                    sentinel.port, "SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.master_name
                )
            except (redis.RedisError, OSError):
                continue
            port = int(host_port[1])
            for server in self.servers:
                if server.port == port:
                    return server
        raise RuntimeError("no sentinel names a primary")

    def failover(self, timeout: float = 30.0) -> RedisServer:
        """``SENTINEL FAILOVER`` and wait until the old primary replicates the new one."""
        old = self.current_primary()
        asked = next(s for s in self.sentinels if s.running)
        _cmd(asked.port, "SENTINEL", "FAILOVER", self.master_name)
        _wait(
            "the sentinels to name a new primary",
            lambda: self.current_primary() is not old,
            timeout,
        )
        _wait("the old primary to replicate the new one", self._replica_synced, timeout)
        return self.current_primary()

    def kill_primary(self, timeout: float = 60.0) -> tuple[RedisServer, RedisServer]:
        """SIGKILL the primary and wait until the sentinels name the replica instead.

        Returns ``(killed, promoted)``. The killed server stays down until
        :meth:`heal` restarts it (the sentinels then make it a replica of the new one).
        """
        old = self.current_primary()
        old.kill()
        _wait(
            "the sentinels to promote the replica",
            lambda: self.current_primary() is not old,
            timeout,
        )
        return old, self.current_primary()

    def heal(self, timeout: float = 60.0) -> None:
        """Restart every stopped server and wait until a replica is in sync again and the
        sentinels see it, so the setup can fail over once more."""
        for server in [*self.servers, *self.sentinels]:
            if not server.running:
                server.start()
        _wait("the replica to sync", self._replica_synced, timeout)
        _wait("every sentinel to see the replica and the others", self._sentinels_ready, timeout)

    def stop(self) -> None:
        """Stop every process by its pid and remove the working directories."""
        for server in [*self.sentinels, self.replica, self.primary]:
            server.cleanup()

    def __enter__(self) -> SentinelSetup:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _all_nodes_name_owner(cluster: RedisClusterSetup, slot: int, port: int) -> bool:
    """True when every running node's slot table gives ``slot`` to the master on ``port``."""
    for server in cluster.servers:
        if not server.running:
            continue
        owner = None
        for lo, hi, master, *_ in _cmd(server.port, "CLUSTER", "SLOTS"):
            if lo <= slot <= hi:
                owner = int(master[1])
        if owner != port:
            return False
    return True
