"""The lab itself must tell an open port from a dropped and a rejected one, or every kernel test lies."""

import pytest

from tests.netns_lab import host_pair, require_netns, tcp_connect, tcp_listener

pytestmark = pytest.mark.kernel


def test_lab_distinguishes_open_drop_and_reject() -> None:
    require_netns("iptables")
    with host_pair() as (client, server), tcp_listener(server):
        assert tcp_connect(client, server.ip, 10250) == "open"
        server.exec("iptables", "-A", "INPUT", "-p", "tcp", "--dport", "10250", "-j", "DROP")
        assert tcp_connect(client, server.ip, 10250, 0.5) == "timeout"
        server.exec("iptables", "-R", "INPUT", "1", "-p", "tcp", "--dport", "10250", "-j", "REJECT")
        assert tcp_connect(client, server.ip, 10250) == "refused"
