"""The probe frame and parameters on the Python side: render/parse, Azure's 4,096-byte cut, validation."""

from __future__ import annotations

import base64
import random
import re
import string

import pytest

from shared.probe.frame import (
    BEGIN_LINE,
    FRAME_LIMIT,
    Missing,
    gzip_base64,
    parse_frame,
    parse_run_command_output,
    render_error_frame,
    render_frame,
    split_run_command_message,
    wrap_run_command_message,
)
from shared.probe.params import (
    MAX_TARGETS,
    PARAMETER_NAMES,
    ProbeArgumentError,
    build_arguments,
    build_parameters,
    load_script,
    time_bound_seconds,
    validate_arguments,
)
from shared.snapshot import NodeProbe, TlsCheck, Unavailable

UFW_TEXT = (
    "Status: active\nLogging: on (low)\nDefault: deny (incoming), allow (outgoing), disabled (routed)\n"
    "New profiles: skip\n\nTo                         Action      From\n--                         ------      ----\n"
    "10250/tcp                  DENY IN     Anywhere                  \n\n"
)
IPTABLES_TEXT = "*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -p tcp -m tcp --dport 10250 -j DROP\nCOMMIT\n"
API_HOST = "clu-dns-1a2b3c.hcp.westeurope.azmk8s.io"


def _frame(**overrides: object) -> str:
    values: dict[str, object] = {
        "host": "aks-nodepool1-12345678-vmss000000",
        "containers": ("konnectivity-agent", "coredns"),
        "api_host": API_HOST,
        "api_ip": "20.61.7.10",
        "egress": {"tcp/443": "ok", "udp/1194": "timeout"},
        "reach": {"10.224.0.4": "ok", "10.224.0.5": "timeout", "10.224.0.6": "refused"},
        "ufw_status": UFW_TEXT,
        "iptables_rules": IPTABLES_TEXT,
        "tls": "0 konnectivity CN = ca",
    }
    values.update(overrides)
    return render_frame(**values)  # type: ignore[arg-type]


def _noise(size: int, seed: int) -> str:
    """Text gzip cannot shrink much, to push a section over the budget."""
    rng = random.Random(seed)
    return "".join(rng.choice(string.ascii_letters + string.digits) for _ in range(size))


# ------------------------------------------------------------------ round trip


def test_render_then_parse_round_trips_every_field() -> None:
    probe = parse_frame(_frame(), "node-0")
    assert probe == NodeProbe(
        node="node-0",
        ufw_status=UFW_TEXT,
        iptables_save=IPTABLES_TEXT,
        containers=("konnectivity-agent",),  # only tunnel agents are reported
        reachability={"10.224.0.4": "ok", "10.224.0.5": "timeout", "10.224.0.6": "refused"},
        egress={"tcp/443": "ok", "udp/1194": "timeout"},
        api_server_ip="20.61.7.10",
        tls=TlsCheck(verified=True, alpn="konnectivity", issuer="CN = ca"),
        container_states={"konnectivity-agent": "running"},
    )


def test_rendered_frame_has_the_protocol_layout() -> None:
    lines = _frame().splitlines()
    assert lines[0] == BEGIN_LINE
    assert lines[1:8] == ["host aks-nodepool1-12345678-vmss000000", "crictl konnectivity-agent",
                          "ctr konnectivity-agent:running:0", f"api {API_HOST} 20.61.7.10",
                          "tls 0 konnectivity CN = ca", "egress tcp/443 ok", "egress udp/1194 timeout"]
    assert lines[-3].startswith("ufw gz ")
    assert lines[-2].startswith("iptables gz ")
    assert lines[-1] == f"==AKSPROBE v1 END lines={len(lines) - 2}=="


@pytest.mark.parametrize(
    ("overrides", "field", "expected"),
    [
        ({"containers": Missing.ABSENT}, "containers", None),
        ({"containers": ()}, "containers", ()),
        ({"containers": ("coredns",)}, "containers", ()),
        ({"containers": ("aks-link", "tunnel-front")}, "containers", ("tunnel-front", "aks-link")),
        ({"ufw_status": Missing.ABSENT}, "ufw_status", None),
        ({"iptables_rules": Missing.ABSENT}, "iptables_save", None),
        ({"iptables_rules": Missing.ERROR}, "iptables_save", None),
        ({"api_ip": None}, "api_server_ip", None),
        ({"api_ip": None}, "egress", {"tcp/443": "unresolved", "udp/1194": "unresolved"}),
        ({"egress": {"udp/1194": "silent"}}, "egress", {"udp/1194": "silent"}),
        ({"containers": Missing.ABSENT}, "container_states", {}),
        ({"containers": Missing.ERROR}, "container_states", {}),
        ({"containers": ("konnectivity-agent",), "container_states": {}}, "container_states", {}),
        ({"containers": (), "container_states": {"aks-link": ("exited", 4)}}, "container_states",
         {"aks-link": "exited restarts=4"}),
        ({"containers": ("aks-link",), "container_states": {"aks-link": ("running", 0)}}, "container_states",
         {"aks-link": "running"}),
    ],
)
def test_missing_pieces_parse_to_their_documented_values(overrides: dict[str, object], field: str,
                                                         expected: object) -> None:
    probe = parse_frame(_frame(**overrides), "n")
    assert isinstance(probe, NodeProbe)
    assert getattr(probe, field) == expected


@pytest.mark.parametrize(
    ("word", "expected"),
    [
        ("0 konnectivity CN = ca", TlsCheck(True, "konnectivity", "CN = ca")),
        ("0 - CN = ca", TlsCheck(True, None, "CN = ca")),
        ("21 - O = Contoso Inspection, CN = Contoso CA",
         TlsCheck(False, None, "O = Contoso Inspection, CN = Contoso CA")),
        ("20 konnectivity CN = proxy", TlsCheck(False, "konnectivity", "CN = proxy")),
        ("19 - ", TlsCheck(False, None, "")),
    ],
)
def test_tls_line_parses_to_a_judged_handshake(word: str, expected: TlsCheck) -> None:
    probe = parse_frame(_frame(tls=word), "n")
    assert isinstance(probe, NodeProbe)
    assert probe.tls == expected


@pytest.mark.parametrize(
    ("word", "api_ip", "says"),
    [
        (None, "20.61.7.10", "openssl is not installed"),
        ("absent", "20.61.7.10", "openssl is not installed"),
        ("noca", "20.61.7.10", "/etc/kubernetes/certs/ca.crt"),
        ("error", "20.61.7.10", "gave no certificate"),
        ("0 konnectivity CN = ca", None, "did not resolve"),
        ("10 konnectivity CN = ca", "20.61.7.10", "verify code 10"),  # expired: says nothing about the issuer
    ],
)
def test_tls_that_could_not_be_judged_is_could_not_tell(word: str | None, api_ip: str | None, says: str) -> None:
    probe = parse_frame(_frame(tls=word, api_ip=api_ip), "n")
    assert isinstance(probe, NodeProbe)
    assert probe.tls is not None
    assert probe.tls.verified is None
    assert probe.tls.error is not None
    assert says in probe.tls.error


def test_frame_without_tls_or_ctr_lines_reads_as_not_checked() -> None:
    lines = [line for line in _frame().splitlines() if not line.startswith(("tls ", "ctr "))]
    lines[-1] = f"==AKSPROBE v1 END lines={len(lines) - 2}=="
    probe = parse_frame("\n".join(lines) + "\n", "n")
    assert isinstance(probe, NodeProbe)
    assert probe.tls is None
    assert probe.container_states == {}


@pytest.mark.parametrize("bad", ["tls 0", "tls maybe", "tls 1234 konnectivity x", "ctr aks-link:exited",
                                 "ctr aks-link:Exited:1", "tls 0 konnectivity caf\u00e9"])
def test_malformed_tls_or_ctr_line_is_malformed(bad: str) -> None:
    lines = [bad if line.startswith(bad.split(" ", maxsplit=1)[0] + " ") else line for line in _frame().splitlines()]
    probe = parse_frame("\n".join(lines) + "\n", "n")
    assert isinstance(probe, Unavailable)
    assert "malformed" in probe.reason


def test_ufw_error_makes_ufw_unknown_not_ufw_absent() -> None:
    probe = parse_frame(_frame(ufw_status=Missing.ERROR), "n")
    assert isinstance(probe, NodeProbe)
    assert probe.ufw_status is None
    assert probe.ufw_error is not None
    assert "ufw status verbose" in probe.ufw_error
    assert probe.iptables_save is not None  # the rest of the probe stays usable


def test_oversized_iptables_section_becomes_toolarge_and_frame_stays_in_budget() -> None:
    big = IPTABLES_TEXT + _noise(6000, seed=1)
    frame = _frame(iptables_rules=big)
    assert len(frame.encode()) <= FRAME_LIMIT
    assert f"iptables toolarge {len(big)}" in frame.splitlines()
    probe = parse_frame(frame, "n")
    assert isinstance(probe, NodeProbe)
    assert probe.iptables_save is None
    assert probe.ufw_status == UFW_TEXT  # ufw is placed first and still fits


def test_oversized_ufw_section_is_unknown_with_its_size() -> None:
    big = UFW_TEXT + _noise(5000, seed=2)
    frame = _frame(ufw_status=big)
    assert len(frame.encode()) <= FRAME_LIMIT
    probe = parse_frame(frame, "n")
    assert isinstance(probe, NodeProbe)
    assert probe.ufw_status is None
    assert probe.ufw_error is not None
    assert str(len(big)) in probe.ufw_error
    assert "too large" in probe.ufw_error


def test_frame_at_maximum_size_still_fits() -> None:
    reach = {f"10.224.{i}.{i + 10}": "timeout" for i in range(MAX_TARGETS)}
    frame = _frame(reach=reach, api_host="a" * 253, egress={"tcp/443": "noroute", "tcp/9000": "refused",
                                                            "udp/1194": "silent"},
                   containers=("konnectivity-agent", "tunnel-front", "aks-link"),
                   container_states={"konnectivity-agent": ("running", 999999), "tunnel-front": ("unknown", 999999),
                                     "aks-link": ("running", 999999)},
                   tls="21 " + "a" * 32 + " " + "O" * 100,
                   iptables_rules=IPTABLES_TEXT + _noise(2200, seed=3))
    assert len(frame.encode()) <= FRAME_LIMIT
    probe = parse_frame(frame, "n")
    assert isinstance(probe, NodeProbe)
    assert probe.tls is not None
    assert probe.tls.issuer == "O" * 100
    assert probe.egress["udp/1194"] == "silent"
    assert probe.iptables_save is None or probe.iptables_save.startswith(IPTABLES_TEXT)


# ------------------------------------------------------------------ run-command message


def test_message_wrapping_and_parsing_like_azure() -> None:
    message = wrap_run_command_message(_frame(), "some warning on stderr\n")
    assert message.startswith("Enable succeeded: \n[stdout]\n==AKSPROBE v1 BEGIN==\n")
    assert "\n[stderr]\nsome warning on stderr\n" in message
    probe = parse_run_command_output(message, "node-0")
    assert isinstance(probe, NodeProbe)
    assert probe.reachability["10.224.0.5"] == "timeout"


def test_each_stream_is_cut_to_its_last_4096_bytes() -> None:
    message = wrap_run_command_message("o" * 5000 + "END", "e" * 4100 + "TAIL")
    streams = split_run_command_message(message)
    assert streams is not None
    out, err = streams
    assert len(out) == 4096
    assert out.endswith("END")
    assert len(err) == 4096
    assert err.endswith("TAIL")


def test_junk_before_the_frame_is_ignored() -> None:
    probe = parse_run_command_output(wrap_run_command_message("Welcome to Ubuntu\nmotd\n" + _frame(), ""), "n")
    assert isinstance(probe, NodeProbe)


def test_frame_cut_from_the_front_is_truncated_not_a_verdict() -> None:
    # A frame that was too long (built by hand, bypassing the budget): Azure keeps its last 4,096 bytes.
    frame = _frame()
    oversized = frame.replace("ufw gz ", "ufw gz " + gzip_base64(_noise(6000, seed=4)) + "AAAA", 1)
    assert len(oversized) > 4096
    probe = parse_run_command_output(wrap_run_command_message(oversized, ""), "n")
    assert isinstance(probe, Unavailable)
    assert probe.reason.startswith("probe output was truncated")
    assert "BEGIN" in probe.reason


def test_missing_end_line_is_truncated() -> None:
    cut = "\n".join(_frame().splitlines()[:-1]) + "\n"
    probe = parse_frame(cut, "n")
    assert isinstance(probe, Unavailable)
    assert probe.reason.startswith("probe output was truncated")
    assert "END" in probe.reason


def test_wrong_line_count_is_truncated() -> None:
    lines = [line for line in _frame().splitlines() if not line.startswith("reach 10.224.0.5 ")]
    probe = parse_frame("\n".join(lines) + "\n", "n")
    assert isinstance(probe, Unavailable)
    assert "counts 12 lines but 11 arrived" in probe.reason


def _replace_payload(frame: str, section: str, transform: object) -> str:
    lines = frame.splitlines()
    for i, line in enumerate(lines):
        if line.startswith(f"{section} gz "):
            lines[i] = f"{section} gz " + transform(line[len(section) + 4:])  # type: ignore[operator]
    return "\n".join(lines) + "\n"


def test_corrupted_base64_is_reported() -> None:
    broken = _replace_payload(_frame(), "iptables", lambda b64: b64[:-3])
    probe = parse_frame(broken, "n")
    assert isinstance(probe, Unavailable)
    assert "iptables section is not valid base64-encoded gzip" in probe.reason
    assert probe.reason.startswith("probe output was truncated or corrupted")


def test_corrupted_gzip_with_valid_base64_is_reported() -> None:
    def flip(b64: str) -> str:
        raw = bytearray(base64.b64decode(b64))
        raw[len(raw) // 2] ^= 0xFF
        return base64.b64encode(bytes(raw)).decode()

    probe = parse_frame(_replace_payload(_frame(), "ufw", flip), "n")
    assert isinstance(probe, Unavailable)
    assert "ufw section is not valid base64-encoded gzip" in probe.reason


def test_error_frame_carries_the_scripts_reason() -> None:
    probe = parse_run_command_output(wrap_run_command_message(render_error_frame("invalid timeout (x)"), ""), "n")
    assert probe == Unavailable("the node probe refused to run: invalid timeout (x)")


def test_malformed_line_is_reported_with_its_text() -> None:
    bad = _frame().replace("reach 10.224.0.6 refused", "reach 10.224.0.6 maybe")
    probe = parse_frame(bad, "n")
    assert isinstance(probe, Unavailable)
    assert "malformed" in probe.reason
    assert "maybe" in probe.reason


def test_other_protocol_version_is_named() -> None:
    frame = _frame().replace("AKSPROBE v1 BEGIN", "AKSPROBE v2 BEGIN")
    probe = parse_frame(frame, "n")
    assert isinstance(probe, Unavailable)
    assert "v2" in probe.reason


def test_message_without_stdout_is_unavailable() -> None:
    probe = parse_run_command_output("VM has reported a failure when processing extension", "n")
    assert isinstance(probe, Unavailable)
    assert "no [stdout]" in probe.reason


# ------------------------------------------------------------------ parameters


def test_build_parameters_in_positional_order() -> None:
    params = build_parameters(API_HOST, ["tcp/443", "udp/1194"], ["10.224.0.4", "10.224.0.5"], 10250, 2)
    assert [p["name"] for p in params] == list(PARAMETER_NAMES)
    assert [p["value"] for p in params] == ["1", API_HOST, "tcp/443,udp/1194", "10.224.0.4,10.224.0.5",
                                            "10250", "2"]


def test_empty_lists_become_the_none_marker() -> None:
    assert build_arguments(API_HOST, [], []) == ["1", API_HOST, "-", "-", "10250", "3"]


@pytest.mark.parametrize(
    ("kwargs", "named"),
    [
        ({"targets": ["1.2.3.4;reboot"]}, "'1.2.3.4;reboot'"),
        ({"targets": ["01.2.3.4"]}, "'01.2.3.4'"),
        ({"targets": ["256.1.1.1"]}, "'256.1.1.1'"),
        ({"targets": ["10.0.0.1", "10.0.0.1"]}, "given twice"),
        ({"targets": "10.0.0.1"}, "must be a list"),
        ({"targets": [f"10.0.0.{i}" for i in range(MAX_TARGETS + 1)]}, f"at most {MAX_TARGETS}"),
        ({"api_host": "a" * 300}, "'" + "a" * 300 + "'"),
        ({"api_host": "-rf"}, "'-rf'"),
        ({"api_host": "a..b"}, "'a..b'"),
        ({"api_host": "host$(reboot)"}, "'host$(reboot)'"),
        ({"tunnel_checks": ["tcp/22"]}, "'tcp/22'"),
        ({"kubelet_port": 70000}, "70000"),
        ({"kubelet_port": 0}, "kubelet_port 0"),
        ({"kubelet_port": True}, "kubelet_port True"),
        ({"timeout": 0}, "timeout 0"),
        ({"timeout": 11}, "timeout 11"),
    ],
)
def test_build_parameters_names_the_bad_value(kwargs: dict[str, object], named: str) -> None:
    args: dict[str, object] = {"api_host": API_HOST, "tunnel_checks": ["tcp/443"], "targets": ["10.0.0.1"]}
    args.update(kwargs)
    with pytest.raises(ValueError) as caught:
        build_parameters(**args)  # type: ignore[arg-type]
    assert named in str(caught.value)


def test_validate_arguments_mirrors_the_script() -> None:
    parsed = validate_arguments(["1", API_HOST, "tcp/443,udp/1194", "10.0.0.1,10.0.0.2", "10250", "1"])
    assert parsed.tunnel_checks == ("tcp/443", "udp/1194")
    assert parsed.targets == ("10.0.0.1", "10.0.0.2")
    with pytest.raises(ProbeArgumentError, match="invalid targets"):
        validate_arguments(["1", API_HOST, "-", "10.0.0.1,", "10250", "1"])
    with pytest.raises(ProbeArgumentError, match="expected 6 arguments, got 5"):
        validate_arguments(["1", API_HOST, "-", "-", "10250"])


def test_time_bound_grows_with_targets_in_lanes_of_eight() -> None:
    assert time_bound_seconds(0, 3) == 9
    assert time_bound_seconds(16, 2) == 10


def test_script_ships_with_the_package_and_agrees_on_limits() -> None:
    script = load_script()
    assert script.startswith("#!/bin/bash\n")
    assert BEGIN_LINE in script
    assert re.search(rf"^readonly MAX_TARGETS={MAX_TARGETS}$", script, re.MULTILINE)
    assert re.search(rf"^readonly FRAME_LIMIT={FRAME_LIMIT}\b", script, re.MULTILINE)
    assert "eval" not in re.sub(r"#.*", "", script)
