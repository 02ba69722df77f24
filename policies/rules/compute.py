"""EC2 hardening: IMDSv2 only, encrypted EBS, no public IP on instances and launch templates."""
from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from ..core import (
    UNKNOWN,
    Context,
    Finding,
    Resource,
    as_bool,
    as_list,
    get,
    levels,
    opaque,
    rule,
    undetermined,
    violation,
)

LT = "aws:ec2/launchTemplate:LaunchTemplate"
INSTANCE = "aws:ec2/instance:Instance"
LC = "aws:ec2/launchConfiguration:LaunchConfiguration"
SPOT = "aws:ec2/spotInstanceRequest:SpotInstanceRequest"
VOLUME = "aws:ebs/volume:Volume"
ECS_SERVICE = "aws:ecs/service:Service"
EIP = "aws:ec2/eip:Eip"
EIP_ASSOC = "aws:ec2/eipAssociation:EipAssociation"


@rule(
    name="ec2-imdsv2-required",
    description="EC2 instances, launch templates and launch configurations require IMDSv2 session tokens "
                "(metadataOptions.httpTokens = required) or disable the metadata endpoint.",
    must="Secrets management: instances read secrets at boot through their IAM role; IMDSv1 lets any SSRF "
         "in a model server or proxy steal those credentials",
    guide="Security Considerations > Secrets Management",
    severity="high",
    levels=levels(dev="mandatory"),
    remediation="Set metadataOptions: {httpTokens: 'required', httpEndpoint: 'enabled', httpPutResponseHopLimit: 1} "
                "on the launch template or instance; hop limit 1 also keeps containers (which may run model code) "
                "from reaching the instance's credentials; raise it to 2 only for a container that must.",
    types=(LT, INSTANCE, LC, SPOT),
)
def imdsv2(r: Resource, ctx: Context) -> Iterator[Finding]:
    opts = r.get("metadataOptions")
    if opaque(opts):
        yield undetermined("metadataOptions is not known yet")
        return
    endpoint, tokens = get(opts, "httpEndpoint"), get(opts, "httpTokens")
    if isinstance(endpoint, str) and endpoint.lower() == "disabled":
        return
    if opaque(tokens) or opaque(endpoint):
        yield undetermined("metadataOptions.httpTokens is not known yet")
    elif not isinstance(tokens, str) or tokens.lower() != "required":
        shown = "not set (IMDSv1 stays enabled)" if tokens is None else f"{tokens!r}"
        yield violation(f"metadataOptions.httpTokens is {shown}: IMDSv1 lets a request forgery in the model "
                        "server or proxy read the instance role's credentials; require IMDSv2 tokens")


def _ebs_findings(where: str, enc: Any) -> list[Finding]:
    b = as_bool(enc)
    if opaque(b):
        return [undetermined(f"{where}.encrypted is not known yet")]
    if b is not True:
        shown = "not set" if enc is None else repr(enc)
        return [violation(f"{where}.encrypted is {shown}: the volume holds model weights and logs unencrypted")]
    return []


@rule(
    name="ebs-volumes-encrypted",
    description="Every EBS volume of instances, launch templates, launch configurations and standalone "
                "volumes is encrypted, the root volume included.",
    must="Encryption at rest",
    guide="Security Considerations > Data Privacy and Compliance (HIPAA: encryption at rest and in transit)",
    severity="high",
    levels=levels(dev="mandatory"),
    remediation="Declare the root device in blockDeviceMappings (launch template: ebs.encrypted 'true', "
                "ebs.kmsKeyId a CMK) or rootBlockDevice.encrypted true (instance); set encrypted on every "
                "other EBS device and on aws.ebs.Volume.",
    types=(LT, INSTANCE, LC, SPOT, VOLUME),
)
def ebs_encrypted(r: Resource, ctx: Context) -> Iterator[Finding]:
    if r.type == VOLUME:
        yield from _ebs_findings("volume", r.get("encrypted"))
        return
    if r.type == LT:
        maps = r.get("blockDeviceMappings")
        if opaque(maps):
            yield undetermined("blockDeviceMappings is not known yet")
            return
        ebs_maps = [m for m in as_list(maps) if isinstance(m, dict) and not get(m, "virtualName")
                    and not get(m, "noDevice")]
        if not ebs_maps:
            yield violation("no blockDeviceMappings: the root volume takes the AMI snapshot's settings and is not "
                            "encrypted unless the account enforces it; declare it with ebs.encrypted 'true'")
            return
        for i, m in enumerate(ebs_maps):
            ebs = get(m, "ebs")
            if opaque(ebs):
                yield undetermined(f"blockDeviceMappings[{i}].ebs is not known yet")
                continue
            name = get(m, "deviceName") or i
            yield from _ebs_findings(f"blockDeviceMappings[{name}].ebs", get(ebs, "encrypted"))
        return
    root = r.get("rootBlockDevice")
    if opaque(root):
        yield undetermined("rootBlockDevice is not known yet")
    elif not isinstance(root, dict):
        yield violation("no rootBlockDevice: the root volume takes the AMI snapshot's settings and is not "
                        "encrypted unless the account enforces it; set rootBlockDevice.encrypted true")
    else:
        yield from _ebs_findings("rootBlockDevice", root.get("encrypted"))
    for i, d in enumerate(as_list(r.get("ebsBlockDevices"))):
        if opaque(d):
            yield undetermined(f"ebsBlockDevices[{i}] is not known yet")
        elif isinstance(d, dict):
            yield from _ebs_findings(f"ebsBlockDevices[{d.get('deviceName', i)}]", d.get("encrypted"))


@rule(
    name="no-public-ip",
    description="No public IP on instances, launch templates, launch configurations, ECS services, and no "
                "Elastic IP attached to an instance or network interface; an instance without a subnet lands in the "
                "default VPC's public default subnets.",
    must="Deploy on a private network/VPC, no direct internet exposure",
    guide="Security Considerations > Network Security",
    severity="critical",
    levels=levels(dev="mandatory"),
    remediation="Run inference in private subnets only; set associatePublicIpAddress false (launch templates: "
                "networkInterfaces[].associatePublicIpAddress 'false'), ECS assignPublicIp false; reach the "
                "service through the internal load balancer and administer it through SSM.",
    types=(LT, INSTANCE, LC, SPOT, ECS_SERVICE, EIP, EIP_ASSOC),
)
def no_public_ip(r: Resource, ctx: Context) -> Iterator[Finding]:
    def check(where: str, value: Any) -> list[Finding]:
        b = as_bool(value)
        if opaque(b):
            return [undetermined(f"{where} is not known yet")]
        if b is True:
            return [violation(f"{where} is {value!r}: the instance gets a public address")]
        return []

    if r.type == LT:
        nis = r.get("networkInterfaces")
        if opaque(nis):
            yield undetermined("networkInterfaces is not known yet")
            return
        for i, ni in enumerate(as_list(nis)):
            yield from check(f"networkInterfaces[{i}].associatePublicIpAddress", get(ni, "associatePublicIpAddress"))
    elif r.type == ECS_SERVICE:
        yield from check("networkConfiguration.assignPublicIp", r.get("networkConfiguration.assignPublicIp"))
    elif r.type == EIP:
        for k in ("instance", "networkInterface"):
            v = r.get(k)
            if v is UNKNOWN or (isinstance(v, str) and v):
                yield violation(f"an Elastic IP is attached to {k} {v!r}: a public address on a workload")
                break
    elif r.type == EIP_ASSOC:
        for k in ("instanceId", "networkInterfaceId"):
            v = r.get(k)
            if v is UNKNOWN or (isinstance(v, str) and v):
                yield violation(f"an Elastic IP association puts a public address on {k} {v!r}")
                break
    else:
        yield from check("associatePublicIpAddress", r.get("associatePublicIpAddress"))
        for i, ni in enumerate(as_list(r.get("networkInterfaces"))):
            if isinstance(ni, dict) and "associatePublicIpAddress" in ni:
                yield from check(f"networkInterfaces[{i}].associatePublicIpAddress", ni["associatePublicIpAddress"])
        if r.type in (INSTANCE, SPOT) and r.get("associatePublicIpAddress") is None and \
                r.get("subnetId") is None and not as_list(r.get("networkInterfaces")):
            # no subnet: EC2 launches into the default VPC, whose default subnets assign public IPv4 addresses
            yield violation("the instance names no subnet: it launches into a default subnet of the default VPC, "
                            "which assigns a public IP address (MapPublicIpOnLaunch)")


RULES = [imdsv2, ebs_encrypted, no_public_ip]
