"""A network of its own on this machine, for tests that cut a host off: network namespaces joined by veth links.

The root namespace is the "server host": a bridge in it carries one private address (`Rig.server_address`, in
10.213.0.0/16) where the test binds its servers. Each `Host` is a network namespace with one veth pair: one end
inside the namespace (with the host's own address on the bridge's /24), the other end in the root namespace,
enslaved to the bridge. `Host.cut()` sets that root-side end down, so nothing passes between the host and the
servers (or the other hosts) until `Host.heal()` sets it up again; connections are not reset, their packets are
dropped, as when a cable is pulled.

Everything created is named `gq<pid>...` (the pid of this process), and `Rig.close()` removes it all: the
namespaces, the veth links and the bridge. Processes started in a namespace are the caller's to stop (by pid)
before the rig is closed. Addresses exist only on these links; nothing else on any network is reached.

Needs root and a working `ip netns`: `unavailable()` says why not, for a test to skip on.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import shutil
import subprocess
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

#: the private range every rig's /24 comes from
RANGE = ipaddress.IPv4Network("10.213.0.0/16")


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run `ip ARGS...`; CalledProcessError (with ip's stderr) when `check` and it fails."""
    result = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)
    if check and result.returncode != 0:
        raise subprocess.CalledProcessError(result.returncode, ["ip", *args], result.stdout, result.stderr)
    return result


def unavailable() -> str | None:
    """None when this process can build a rig (root, `ip` installed, namespaces work); else the reason, in a line."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    if shutil.which("ip") is None:
        return "the ip command (iproute2) is not installed"
    probe = f"gq{os.getpid()}probe"
    try:
        made = ip("netns", "add", probe, check=False)
        if made.returncode != 0:
            return f"ip netns add failed: {made.stderr.strip() or made.returncode}"
    finally:
        ip("netns", "del", probe, check=False)
    return None


def _used_networks() -> set[ipaddress.IPv4Network]:
    """The /24s of RANGE that an address of the root namespace is in already."""
    used: set[ipaddress.IPv4Network] = set()
    for line in ip("-o", "-4", "addr", "show").stdout.splitlines():
        fields = line.split()
        if "inet" in fields:
            interface = ipaddress.IPv4Interface(fields[fields.index("inet") + 1])
            if interface.ip in RANGE:
                used.add(ipaddress.IPv4Network(f"{interface.ip}/24", strict=False))
    return used


def _free_subnet() -> ipaddress.IPv4Network:
    """A /24 of RANGE no interface of the root namespace is on, starting from one picked by this process's pid."""
    subnets = list(RANGE.subnets(new_prefix=24))
    used = _used_networks()
    start = os.getpid() % len(subnets)
    for offset in range(len(subnets)):
        candidate = subnets[(start + offset) % len(subnets)]
        if candidate not in used and candidate.network_address.packed[2] != 0:
            return candidate
    raise RuntimeError(f"no free /24 left in {RANGE}")


@dataclass
class Host:
    """One worker host: a network namespace reaching the servers through its own veth link."""

    #: the namespace's name, for `ip netns exec`
    namespace: str
    #: the host's address on the rig's /24
    address: str
    #: the root-side end of its veth pair (the one `cut` sets down)
    root_link: str
    #: the end inside the namespace
    inner_link: str

    def argv(self, argv: Sequence[str]) -> list[str]:
        """`argv` run inside the namespace: `ip netns exec NAMESPACE argv...` (ip execs it: the pid is argv's)."""
        return ["ip", "netns", "exec", self.namespace, *argv]

    def cut(self) -> None:
        """Take the link down: from now on no packet passes between this host and the rest of the rig."""
        ip("link", "set", self.root_link, "down")

    def heal(self, timeout: float = 5.0) -> None:
        """Bring the link back up, and wait (up to `timeout` s) until it carries packets again; connections that
        were not given up carry on where they stopped."""
        ip("link", "set", self.root_link, "up")
        operstate = Path("/sys/class/net") / self.root_link / "operstate"
        deadline = time.monotonic() + timeout
        while operstate.read_text().strip() != "up" and time.monotonic() < deadline:
            time.sleep(0.05)

    @property
    def linked(self) -> bool:
        """True while the root-side end of the link is administratively up."""
        text = ip("-o", "link", "show", self.root_link).stdout
        return "UP" in text[text.find("<") + 1 : text.find(">")].split(",")


@dataclass
class Rig:
    """A bridge in the root namespace with the server address, and the hosts joined to it; see the module doc."""

    subnet: ipaddress.IPv4Network
    bridge: str
    hosts: list[Host] = field(default_factory=list)

    @property
    def server_address(self) -> str:
        """The root namespace's address on the bridge: where servers listen for the hosts."""
        return str(self.subnet.network_address + 1)

    @property
    def prefix(self) -> str:
        return f"gq{os.getpid()}"

    def add_host(self, label: str) -> Host:
        """A new namespace `gq<pid><label>` with the next free address, linked to the bridge and up."""
        if not label.isalnum() or len(self.prefix + label) + 1 > 15:
            raise ValueError(f"host label {label!r}: letters and digits, short enough for a 15-character link name")
        name = self.prefix + label
        host = Host(
            namespace=name,
            address=str(self.subnet.network_address + 2 + len(self.hosts)),
            root_link=name,
            inner_link=name + "i",
        )
        self.hosts.append(host)  # before creating anything, so close() removes what part of it exists
        ip("netns", "add", host.namespace)
        ip("link", "add", host.root_link, "type", "veth", "peer", "name", host.inner_link)
        ip("link", "set", host.inner_link, "netns", host.namespace)
        ip("link", "set", host.root_link, "master", self.bridge)
        ip("link", "set", host.root_link, "up")
        inside = ("-n", host.namespace)
        ip(*inside, "addr", "add", f"{host.address}/{self.subnet.prefixlen}", "dev", host.inner_link)
        ip(*inside, "link", "set", host.inner_link, "up")
        ip(*inside, "link", "set", "lo", "up")
        return host

    def close(self) -> None:
        """Remove every namespace, link and the bridge this rig made; what is gone already is skipped."""
        for host in reversed(self.hosts):
            ip("netns", "del", host.namespace, check=False)
            ip("link", "del", host.root_link, check=False)
        self.hosts.clear()
        ip("link", "del", self.bridge, check=False)


@contextlib.contextmanager
def rig() -> Iterator[Rig]:
    """A rig with its bridge up and no hosts yet (add them with `add_host`); closed on leaving, however left."""
    made = Rig(subnet=_free_subnet(), bridge=f"gq{os.getpid()}br")
    try:
        ip("link", "add", made.bridge, "type", "bridge", "forward_delay", "0")
        ip("addr", "add", f"{made.server_address}/{made.subnet.prefixlen}", "dev", made.bridge)
        ip("link", "set", made.bridge, "up")
        yield made
    finally:
        made.close()


def leftovers() -> list[str]:
    """Namespaces and links of this process's rigs that still exist (empty once every rig is closed)."""
    prefix = f"gq{os.getpid()}"
    names = [line.split()[0] for line in ip("netns", "list").stdout.splitlines() if line.strip()]
    links = [line.split(":")[1].strip().split("@")[0] for line in ip("-o", "link", "show").stdout.splitlines()]
    return [name for name in names + links if name.startswith(prefix)]
