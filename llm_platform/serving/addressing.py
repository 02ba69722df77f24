"""Subnet layout of the private network, derived from network.cidr. Pure: no Pulumi.

Private (inference) subnets take the first `az_count` blocks of cidr/prefix+4 (a /16 gives
/20s: 4,091 addresses per AZ, room for ENIs of GPU instances and interface endpoints). With
egress `nat`, small public subnets for the NAT gateways come from the last /prefix+4 block,
split into /prefix+8 pieces; nothing else is ever placed in them.
"""
from __future__ import annotations

import ipaddress
from dataclasses import dataclass


@dataclass(frozen=True)
class SubnetLayout:
    private: tuple[str, ...]
    public: tuple[str, ...]          # empty unless egress is nat


def subnet_layout(cidr: str, az_count: int, egress: str) -> SubnetLayout:
    vpc = ipaddress.ip_network(cidr)
    assert isinstance(vpc, ipaddress.IPv4Network), "the schema accepts IPv4 VPC CIDRs only"
    blocks = list(vpc.subnets(new_prefix=vpc.prefixlen + 4))
    if az_count > len(blocks) - 1:
        raise ValueError(f"{cidr} has room for {len(blocks) - 1} AZs")
    private = tuple(str(b) for b in blocks[:az_count])
    public: tuple[str, ...] = ()
    if egress == "nat":
        public = tuple(str(b) for b in list(blocks[-1].subnets(new_prefix=vpc.prefixlen + 8))[:az_count])
    return SubnetLayout(private, public)
