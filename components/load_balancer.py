"""InternalLoadBalancer: the only way in. An internal ALB, HTTPS only, with WAF in front.

Defaults:
- internal scheme across the private subnets; its security group admits 443 from
  `network.allowed_client_cidrs` only and sends only to the instances' proxy port;
- one HTTPS listener, policy ELBSecurityPolicy-TLS13-1-2-2021-06 (TLS 1.3 and 1.2 only), with
  `api.certificate_arn` or, without one, a certificate for `<domain>` and `*.<domain>` signed by a
  CA that pulumi-tls makes for this stack and imported into ACM (clients trust the CA; its key is
  a Pulumi secret, never in plaintext state);
- invalid header fields dropped; deletion protection in prod; idle timeout 4000 s (the ALB
  maximum) so long generations can stream; access logs to an encrypted, private bucket that
  expires them with the stack's log retention;
- routing by host: `<name>.<domain>` -> that model's target group. Host routing, not path
  routing, because the ALB cannot rewrite paths and OpenAI clients expect /v1 at the root of
  their base URL. A private Route 53 zone for the domain carries one alias per model;
- per model an HTTPS target group on the proxy port: health check /health (no slow start: ELB
  refuses it with least outstanding requests, and the check already waits for a loaded model),
  least outstanding requests (LLM requests vary 1000x in length; round robin piles them up),
  deregistration delay 300 s so in-flight streams finish during scale-in and rolling updates;
- a WAFv2 web ACL: a rate-based rule per client IP from `api.rate_limit_per_5min`, a request
  size rule from `api.max_prompt_bytes`, AWS's common and known-bad-inputs rule sets. Their
  body-inspecting rules are set to count, not block: prompts are source code, and the body rules
  (XSS, RFI/LFI, size, instance-metadata SSRF, Log4j, Java deserialization) would refuse ordinary
  coding requests. WAF logs go to a CMK
  log group with the Authorization header redacted.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws
import pulumi_tls as tls

from llm_platform.serving.proxy import METRICS_PORT, TARGET_PORT

from .model_store import private_bucket, tls_only_statement

TLS_POLICY = "ELBSecurityPolicy-TLS13-1-2-2021-06"
# Elastic Load Balancing's log-delivery accounts for Regions older than August 2022 (AWS docs,
# "Enable access logs for your Application Load Balancer"); newer Regions use the service principal.
ELB_LOG_ACCOUNTS = {
    "us-east-1": "127311923021", "us-east-2": "033677994240", "us-west-1": "027434742980",
    "us-west-2": "797873946194", "ca-central-1": "985666609251", "eu-central-1": "054676820928",
    "eu-west-1": "156460612806", "eu-west-2": "652711504416", "eu-west-3": "009996457667",
    "eu-north-1": "897822967062", "ap-south-1": "718504428378", "ap-northeast-1": "582318560864",
    "ap-northeast-2": "600734575887", "ap-southeast-1": "114774131450", "ap-southeast-2": "783225319266",
    "sa-east-1": "507241528517",
}
BODY_RULES_TO_COUNT = ("SizeRestrictions_BODY", "CrossSiteScripting_BODY", "GenericRFI_BODY", "GenericLFI_BODY",
                       "EC2MetaDataSSRF_BODY")
KNOWN_BAD_BODY_RULES_TO_COUNT = ("Log4JRCE_BODY", "JavaDeserializationRCE_BODY")
WAF_BODY_LIMIT = 8192   # an ALB's WAF inspects at most the first 8 KiB of a body


def cidr_role(cidr: str) -> str:
    """A CIDR as a name part: 10.10.0.0/16 -> 10-10-0-0-16."""
    return cidr.replace(".", "-").replace("/", "-").replace(":", "-")


@dataclass(frozen=True)
class InternalLoadBalancerArgs:
    stack: str
    vpc_id: pulumi.Input[str]
    vpc_cidr: str
    subnet_ids: pulumi.Input[Sequence[pulumi.Input[str]]]
    s3_prefix_list_id: pulumi.Input[str]           # instances reach the model store through the gateway endpoint
    kms_key_arn: pulumi.Input[str]                 # WAF log group
    deployments: Sequence[str]                     # one target group, host rule and DNS name per deployment
    allowed_client_cidrs: Sequence[str]
    domain: str = "llm.internal"
    certificate_arn: str | None = None          # without one: an internal CA and certificate (ca_cert_pem)
    monitoring_cidrs: Sequence[str] = ()
    rate_limit_per_5min: int = 2000
    max_prompt_bytes: int = 131072
    log_retention_days: int = 90
    egress: str = "none"                           # "nat": instances may also reach the internet on 443
    protect: bool = False


class InternalLoadBalancer(pulumi.ComponentResource):
    """Outputs: dns_name, zone_id, arn_suffix, web_acl_arn, instance_security_group_id, alb_security_group_id (to
    admit further in-VPC clients, e.g. the deploy gate), target_group_arns and
    target_group_arn_suffixes (deployment -> value), endpoints (deployment -> https URL), ca_cert_pem (None with
    a certificate_arn)."""

    dns_name: pulumi.Output[str]
    zone_id: pulumi.Output[str]
    arn_suffix: pulumi.Output[str]
    web_acl_arn: pulumi.Output[str]
    instance_security_group_id: pulumi.Output[str]
    alb_security_group_id: pulumi.Output[str]
    target_group_arns: dict[str, pulumi.Output[str]]
    target_group_arn_suffixes: dict[str, pulumi.Output[str]]
    endpoints: dict[str, str]
    ca_cert_pem: pulumi.Output[str] | None

    def __init__(self, name: str, args: InternalLoadBalancerArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("llm-platform:network:InternalLoadBalancer", name, None, opts)
        stack, vpc_id, domain, protect = args.stack, args.vpc_id, args.domain, args.protect
        child = pulumi.ResourceOptions(parent=self)
        tags = {"llm-platform:stack": stack}
        region = aws.get_region_output(opts=pulumi.InvokeOutputOptions(parent=self)).region
        account = aws.get_caller_identity_output(opts=pulumi.InvokeOutputOptions(parent=self)).account_id

        def renamed(old: str) -> pulumi.ResourceOptions:
            # rules were once named by position in their list: the alias keeps them in place
            return pulumi.ResourceOptions(parent=self, aliases=[pulumi.Alias(name=old)])

        # --- security groups: clients -> ALB -> proxy port on the instances; scrapers -> metrics port
        alb_sg = aws.ec2.SecurityGroup(f"{name}-alb", vpc_id=vpc_id, description="LLM API load balancer",
                                            tags={**tags, "Name": f"llm-{stack}-alb"}, opts=child)
        instance_sg = aws.ec2.SecurityGroup(f"{name}-instances", vpc_id=vpc_id,
                                                 description="GPU inference instances: proxy and metrics ports only",
                                                 tags={**tags, "Name": f"llm-{stack}-instances"}, opts=child)
        for i, cidr in enumerate(args.allowed_client_cidrs):
            aws.vpc.SecurityGroupIngressRule(f"{name}-alb-client-{cidr_role(cidr)}", security_group_id=alb_sg.id,
                                             ip_protocol="tcp", from_port=443, to_port=443, cidr_ipv4=cidr,
                                             description="HTTPS from allowed clients",
                                             opts=renamed(f"{name}-alb-client-{i}"))
        aws.vpc.SecurityGroupEgressRule(f"{name}-alb-to-proxy", security_group_id=alb_sg.id, ip_protocol="tcp",
                                        from_port=TARGET_PORT, to_port=TARGET_PORT,
                                        referenced_security_group_id=instance_sg.id,
                                        description="to the auth proxy on the instances", opts=child)
        aws.vpc.SecurityGroupIngressRule(f"{name}-proxy-from-alb", security_group_id=instance_sg.id,
                                         ip_protocol="tcp", from_port=TARGET_PORT, to_port=TARGET_PORT,
                                         referenced_security_group_id=alb_sg.id,
                                         description="auth proxy, from the load balancer only", opts=child)
        for i, cidr in enumerate(args.monitoring_cidrs):
            aws.vpc.SecurityGroupIngressRule(f"{name}-metrics-{cidr_role(cidr)}", security_group_id=instance_sg.id,
                                             ip_protocol="tcp", from_port=METRICS_PORT, to_port=METRICS_PORT,
                                             cidr_ipv4=cidr, description="/metrics from monitoring",
                                             opts=renamed(f"{name}-metrics-{i}"))
        aws.vpc.SecurityGroupEgressRule(f"{name}-instances-endpoints", security_group_id=instance_sg.id,
                                        ip_protocol="tcp", from_port=443, to_port=443, cidr_ipv4=args.vpc_cidr,
                                        description="AWS APIs through the VPC interface endpoints", opts=child)
        aws.vpc.SecurityGroupEgressRule(f"{name}-instances-s3", security_group_id=instance_sg.id,
                                        ip_protocol="tcp", from_port=443, to_port=443,
                                        prefix_list_id=args.s3_prefix_list_id,
                                        description="model store and image layers through the S3 gateway endpoint",
                                        opts=child)
        if args.egress == "nat":
            aws.vpc.SecurityGroupEgressRule(f"{name}-instances-internet", security_group_id=instance_sg.id,
                                            ip_protocol="tcp", from_port=443, to_port=443, cidr_ipv4="0.0.0.0/0",
                                            description="HTTPS out through the NAT gateways (egress nat)", opts=child)

        # --- certificate
        self.ca_cert_pem = None
        if args.certificate_arn:
            cert_arn: pulumi.Input[str] = args.certificate_arn
        else:
            cert_arn, self.ca_cert_pem = internal_certificate(name, domain, tags, child)

        # --- access logs
        logs = private_bucket(f"{name}-access-logs", prefix=f"llm-{stack}-alb-logs-", tags=tags, parent=self,
                              protect=protect, kms_key_arn=None, expire_days=args.log_retention_days)
        writer = region.apply(lambda r: {"AWS": f"arn:aws:iam::{ELB_LOG_ACCOUNTS[r]}:root"} if r in ELB_LOG_ACCOUNTS
                              else {"Service": "logdelivery.elasticloadbalancing.amazonaws.com"})
        logs_policy = aws.s3.BucketPolicy(f"{name}-access-logs", bucket=logs.id, policy=pulumi.Output.json_dumps({
            "Version": "2012-10-17", "Statement": [
                tls_only_statement(logs.arn),
                {"Sid": "ElbLogDelivery", "Effect": "Allow", "Principal": writer, "Action": "s3:PutObject",
                 "Resource": pulumi.Output.format("{0}/alb/AWSLogs/{1}/*", logs.arn, account)}]}), opts=child)

        # --- the load balancer and its listener
        alb = aws.lb.LoadBalancer(
            f"{name}-alb", name_prefix="llm-", internal=True, load_balancer_type="application",
            security_groups=[alb_sg.id], subnets=args.subnet_ids, drop_invalid_header_fields=True,
            enable_deletion_protection=protect, idle_timeout=4000, desync_mitigation_mode="strictest",
            access_logs={"bucket": logs.bucket, "prefix": "alb", "enabled": True}, tags=tags,
            opts=pulumi.ResourceOptions(parent=self, depends_on=[logs_policy]))
        listener = aws.lb.Listener(
            f"{name}-https", load_balancer_arn=alb.arn, port=443, protocol="HTTPS", ssl_policy=TLS_POLICY,
            certificate_arn=cert_arn, default_actions=[{"type": "fixed-response", "fixed_response": {
                "content_type": "application/json", "status_code": "404",
                "message_body": '{"error":"unknown model host: use https://<model>.' + domain + '/v1"}'}}],
            tags=tags, opts=child)

        # --- one target group and host rule per model
        target_groups: dict[str, aws.lb.TargetGroup] = {}
        for i, dep in enumerate(args.deployments):
            # Re-encrypted to the instance's proxy. An ALB does not validate target certificates (ELB docs,
            # load-balancer-target-groups.html: "the load balancer does not validate these certificates"), and
            # its trust stores verify client certificates on listeners (mutual TLS), not targets: no CA can be
            # pinned on this hop. What stands in: only instances the Auto Scaling group registers are targets,
            # and the instances' security group admits :8443 from this load balancer's security group only.
            tg = aws.lb.TargetGroup(
                f"{name}-{dep}", name_prefix="llm-", port=TARGET_PORT, protocol="HTTPS", protocol_version="HTTP1",
                vpc_id=vpc_id, target_type="instance",
                load_balancing_algorithm_type="least_outstanding_requests", deregistration_delay=300,
                health_check={"enabled": True, "path": "/health", "protocol": "HTTPS", "port": "traffic-port",
                              "matcher": "200", "interval": 15, "timeout": 5, "healthy_threshold": 2,
                              "unhealthy_threshold": 3},
                tags={**tags, "llm-platform:deployment": dep}, opts=child)
            aws.lb.ListenerRule(f"{name}-{dep}", listener_arn=listener.arn, priority=10 + i,
                                conditions=[{"host_header": {"values": [f"{dep}.{domain}"]}}],
                                actions=[{"type": "forward", "target_group_arn": tg.arn}], tags=tags, opts=child)
            target_groups[dep] = tg

        # --- WAF
        web_acl = aws.wafv2.WebAcl(f"{name}-waf", scope="REGIONAL", default_action={"allow": {}},
                                        description=f"llm-platform {stack}: rate and size limits, AWS managed rules",
                                        rules=waf_rules(args.rate_limit_per_5min, args.max_prompt_bytes),
                                        visibility_config=_visibility(f"llm-{stack}"), tags=tags, opts=child)
        aws.wafv2.WebAclAssociation(f"{name}-waf", resource_arn=alb.arn, web_acl_arn=web_acl.arn, opts=child)
        waf_logs = aws.cloudwatch.LogGroup(f"{name}-waf-logs", name=f"aws-waf-logs-llm-{stack}",
                                           retention_in_days=args.log_retention_days, kms_key_id=args.kms_key_arn,
                                           tags=tags,
                                           opts=pulumi.ResourceOptions(parent=self, protect=protect))
        aws.wafv2.WebAclLoggingConfiguration(f"{name}-waf-logs", resource_arn=web_acl.arn,
                                             log_destination_configs=[waf_logs.arn],
                                             redacted_fields=[{"single_header": {"name": "authorization"}}], opts=child)

        # --- private DNS
        zone = aws.route53.Zone(f"{name}-zone", name=domain, comment=f"llm-platform {stack}",
                                     vpcs=[{"vpc_id": vpc_id}], tags=tags, opts=child)
        for dep in args.deployments:
            aws.route53.Record(f"{name}-{dep}", zone_id=zone.zone_id, name=f"{dep}.{domain}", type="A",
                               aliases=[{"name": alb.dns_name, "zone_id": alb.zone_id,
                                         "evaluate_target_health": True}], opts=child)

        self.dns_name, self.zone_id, self.arn_suffix = alb.dns_name, alb.zone_id, alb.arn_suffix
        self.web_acl_arn = web_acl.arn
        self.instance_security_group_id = instance_sg.id
        self.alb_security_group_id = alb_sg.id
        self.target_group_arns = {d: tg.arn for d, tg in target_groups.items()}
        self.target_group_arn_suffixes = {d: tg.arn_suffix for d, tg in target_groups.items()}
        self.endpoints = {d: f"https://{d}.{domain}/v1" for d in args.deployments}
        self.register_outputs({"dns_name": self.dns_name, "zone_id": self.zone_id, "arn_suffix": self.arn_suffix,
                               "web_acl_arn": self.web_acl_arn,
                               "instance_security_group_id": self.instance_security_group_id,
                               "alb_security_group_id": self.alb_security_group_id,
                               "target_group_arns": self.target_group_arns,
                               "target_group_arn_suffixes": self.target_group_arn_suffixes,
                               "endpoints": self.endpoints, "ca_cert_pem": self.ca_cert_pem})


def internal_certificate(name: str, domain: str, tags: dict, child: pulumi.ResourceOptions,
                         legacy_name: str | None = None) -> tuple[pulumi.Output[str], pulumi.Output[str]]:
    """An internal CA (pulumi-tls) and a `*.<domain>` server certificate it signs, imported into ACM.
    Returns (ACM certificate ARN, CA certificate PEM): clients trust the CA. `legacy_name`: the name the
    resources were made under before (aliases `<legacy_name>-<role>`)."""
    def opts(role: str) -> pulumi.ResourceOptions:
        if not legacy_name:
            return child
        return pulumi.ResourceOptions.merge(child, pulumi.ResourceOptions(
            aliases=[pulumi.Alias(name=f"{legacy_name}-{role}")]))

    ca_key = tls.PrivateKey(f"{name}-ca", algorithm="ECDSA", ecdsa_curve="P384", opts=opts("ca"))
    ca = tls.SelfSignedCert(f"{name}-ca", private_key_pem=ca_key.private_key_pem, is_ca_certificate=True,
                            validity_period_hours=24 * 365 * 5, early_renewal_hours=24 * 60,
                            subject={"common_name": f"llm-platform internal CA ({domain})",
                                     "organization": "llm-platform"},
                            allowed_uses=["cert_signing", "crl_signing"], opts=opts("ca"))
    key = tls.PrivateKey(f"{name}-server", algorithm="ECDSA", ecdsa_curve="P256", opts=opts("server"))
    csr = tls.CertRequest(f"{name}-server", private_key_pem=key.private_key_pem,
                          subject={"common_name": domain, "organization": "llm-platform"},
                          dns_names=[domain, f"*.{domain}"], opts=opts("server"))
    cert = tls.LocallySignedCert(f"{name}-server", cert_request_pem=csr.cert_request_pem,
                                 ca_private_key_pem=ca_key.private_key_pem, ca_cert_pem=ca.cert_pem,
                                 validity_period_hours=24 * 397, early_renewal_hours=24 * 30,
                                 allowed_uses=["digital_signature", "key_encipherment", "server_auth"],
                                 opts=opts("server"))
    acm = aws.acm.Certificate(f"{name}-cert", private_key=key.private_key_pem, certificate_body=cert.cert_pem,
                              certificate_chain=ca.cert_pem, tags=tags, opts=opts("cert"))
    return acm.arn, ca.cert_pem


def _visibility(metric: str) -> dict:
    return {"cloudwatch_metrics_enabled": True, "metric_name": metric, "sampled_requests_enabled": True}


def waf_rules(rate_limit_per_5min: int, max_prompt_bytes: int) -> list[dict]:
    """Rate limit, request size, AWS managed rules. A request larger than the WAF can inspect is
    judged by its Content-Length: the size rule blocks bodies over max_prompt_bytes when that fits
    in the 8 KiB window, and otherwise blocks Content-Length values with more digits than the limit;
    the proxy's client_max_body_size enforces the exact limit either way."""
    if max_prompt_bytes <= WAF_BODY_LIMIT:
        size = {"size_constraint_statement": {
            "field_to_match": {"body": {"oversize_handling": "MATCH"}}, "comparison_operator": "GT",
            "size": max_prompt_bytes, "text_transformations": [{"priority": 0, "type": "NONE"}]}}
    else:
        size = {"size_constraint_statement": {
            "field_to_match": {"single_header": {"name": "content-length"}}, "comparison_operator": "GT",
            "size": len(str(max_prompt_bytes)), "text_transformations": [{"priority": 0, "type": "NONE"}]}}
    return [
        {"name": "rate-limit-per-ip", "priority": 0, "action": {"block": {}},
         "statement": {"rate_based_statement": {"limit": rate_limit_per_5min, "aggregate_key_type": "IP",
                                                "evaluation_window_sec": 300}},
         "visibility_config": _visibility("rate-limit-per-ip")},
        {"name": "request-size", "priority": 1, "action": {"block": {}}, "statement": size,
         "visibility_config": _visibility("request-size")},
        {"name": "aws-common", "priority": 2, "override_action": {"none": {}},
         "statement": {"managed_rule_group_statement": {
             "vendor_name": "AWS", "name": "AWSManagedRulesCommonRuleSet",
             "rule_action_overrides": [{"name": r, "action_to_use": {"count": {}}} for r in BODY_RULES_TO_COUNT]}},
         "visibility_config": _visibility("aws-common")},
        {"name": "aws-known-bad-inputs", "priority": 3, "override_action": {"none": {}},
         "statement": {"managed_rule_group_statement": {
             "vendor_name": "AWS", "name": "AWSManagedRulesKnownBadInputsRuleSet",
             "rule_action_overrides": [{"name": r, "action_to_use": {"count": {}}}
                                       for r in KNOWN_BAD_BODY_RULES_TO_COUNT]}},
         "visibility_config": _visibility("aws-known-bad-inputs")},
    ]
