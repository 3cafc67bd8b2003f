"""Review of issue 10: the API server's real answers for a broken tunnel must never read as a plain `error`
(that leaves the symptom `unknown` where the kernel says the path is broken).

The texts are the ones Kubernetes and Konnectivity actually produce:
- konnectivity-client (`grpcTunnel.DialContext`): `dial timeout, backstop`, `dial timeout, context`,
  `tunnel closed`, `dial closed`;
- konnectivity-server: `timed out waiting for backend dial` (DIAL_RSP), `No agent available`;
- kube-apiserver egress selector in HTTP-CONNECT mode: `proxy error from <proxy> while dialing <ip>:10250:
  504 Gateway Timeout` (older: `..., code 504: 504 Gateway Timeout`), `reading HTTP response from CONNECT to
  ... failed: EOF`;
- the agent's own dial (net.DialTimeout) when a local netfilter OUTPUT rule drops it: `connect: operation
  not permitted`.
"""

from __future__ import annotations

import pytest

from shared.kube.classify import classify

URL = 'Get "https://10.224.0.5:10250/containerLogs/kube-system/kube-proxy-abc/kube-proxy?limitBytes=256&tailLines=1": '
UDS = "/etc/kubernetes/konnectivity-server/konnectivity-server.socket"


@pytest.mark.parametrize(("message", "result"), [
    (URL + "dial timeout, backstop", "timeout"),
    (URL + "dial timeout, context", "timeout"),
    (URL + "timed out waiting for backend dial", "timeout"),
    (f"error dialing backend: proxy error from {UDS} while dialing 10.224.0.5:10250: 504 Gateway Timeout",
     "timeout"),
    (URL + "proxy error from 127.0.0.1:8131 while dialing 10.224.0.5:10250, code 504: 504 Gateway Timeout",
     "timeout"),
    (URL + f"proxy error from {UDS} while dialing 10.224.0.5:10250: 500 Internal Server Error", "no-agent"),
    (URL + "proxy error from 127.0.0.1:8131 while dialing 10.224.0.5:10250, code 502: 502 Bad Gateway", "no-agent"),
    (URL + "reading HTTP response from CONNECT to 10.224.0.5:10250 via proxy 127.0.0.1:8131 failed: EOF",
     "no-agent"),
    (URL + "tunnel closed", "no-agent"),
    (URL + "dial closed", "no-agent"),
    (URL + "dial tcp 10.224.0.5:10250: connect: operation not permitted", "refused"),
    (URL + "dial tcp [fd00:10:224::5]:10250: i/o timeout", "timeout"),
    (URL + "dial tcp 10.224.0.5:10250: connect: network is unreachable", "refused"),
    # not the tunnel: a DNS lookup that timed out, or the kubelet refusing a container, stays `error`
    ('Get "https://aks-nodepool1-1-vmss000000:10250/containerLogs/x": dial tcp: lookup aks-nodepool1-1-vmss000000 '
     "on 168.63.129.16:53: i/o timeout", "error"),
    ('container "kube-proxy" in pod "kube-proxy-abc" is waiting to start: ContainerCreating', "error"),
])
def test_real_tunnel_failures_are_classified(message: str, result: str) -> None:
    assert classify(500, message)[0] == result
