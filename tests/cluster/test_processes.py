"""The cluster's own processes: a head and a node on loopback, token auth on, stopped cleanly."""

from __future__ import annotations

import contextlib
import stat
from typing import TYPE_CHECKING

import psutil
import pytest

from outrider._daemon._cluster import ClusterError, Node

if TYPE_CHECKING:
    from pathlib import Path

    from tests.cluster.conftest import Cluster

pytestmark = [pytest.mark.cluster, pytest.mark.slow, pytest.mark.timeout(300)]


def _ray_processes(root: int) -> list[psutil.Process]:
    return [root_process := psutil.Process(root), *root_process.children(recursive=True)]


def test_every_ray_process_listens_on_loopback_only(cluster: Cluster) -> None:
    processes = [*_ray_processes(cluster.head.ray.process.pid),
                 *_ray_processes(cluster.node.ray.process.pid)]  # fmt: skip
    listening = []
    for process in processes:
        with contextlib.suppress(psutil.Error, OSError):  # Ray's short-lived helpers come and go
            listening += [c.laddr for c in process.net_connections("inet") if c.status == "LISTEN"]
    assert len(listening) >= 4  # GCS, two raylets and more
    assert {a.ip.removeprefix("::ffff:") for a in listening} == {"127.0.0.1"}
    mode = stat.S_IMODE((cluster.folder / "cluster.token").stat().st_mode)
    assert mode == 0o600


def test_a_node_without_the_token_is_refused(cluster: Cluster, tmp_path: Path) -> None:
    with pytest.raises(ClusterError, match="refused: the token is not the head's"):
        Node.join(cluster.head.address, "0" * 64, folder=tmp_path, slots=1)
