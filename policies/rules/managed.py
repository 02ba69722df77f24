"""Managed fronts and hosting: API Gateway REST and HTTP APIs and Lambda function URLs in front of a model
(authentication), SageMaker endpoints (encryption of their volumes). A public method with no authorizer
and no API key on a stack that serves a model is a keyless inference API on the internet."""
from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from ..core import (
    UNKNOWN,
    Context,
    Finding,
    Resource,
    Stack,
    Tristate,
    as_bool,
    as_list,
    as_num,
    get,
    levels,
    opaque,
    rule,
    undetermined,
    violation,
)
from ..topology import SM_ENDPOINT_CONFIG, topology
from ..workloads import SAGEMAKER_MODEL

REST_METHOD = "aws:apigateway/method:Method"
HTTP_ROUTE = "aws:apigatewayv2/route:Route"
HTTP_API = "aws:apigatewayv2/api:Api"
FUNCTION_URL = "aws:lambda/functionUrl:FunctionUrl"
SM_ENDPOINT = "aws:sagemaker/endpoint:Endpoint"
_SAGEMAKER_URI = re.compile(r"runtime\.sagemaker|:sagemaker:", re.I)


def _serves_a_model(stack: Stack) -> bool:
    """The stack runs an inference server or hosts a model (SageMaker): its public APIs front it."""
    if stack.of_type(SAGEMAKER_MODEL, SM_ENDPOINT):
        return True
    return bool(topology(stack).inference_groups())


def _open(value: Any) -> bool:
    return value is None or (isinstance(value, str) and value.strip().upper() == "NONE")


@rule(
    name="inference-api-authenticated",
    description="In a stack that serves a model, no API Gateway REST method (authorization NONE without "
                "apiKeyRequired), HTTP API route (authorizationType NONE, the default) or Lambda function URL "
                "(authorizationType NONE) is callable by anyone: each checks IAM, a Cognito/JWT/Lambda authorizer "
                "or an API key. CORS preflight (OPTIONS) routes and PRIVATE REST APIs (reachable only through a VPC "
                "endpoint) are exempt.",
    must="Teams MUST implement authentication for production LLM APIs",
    guide="Security Considerations > Authentication and Authorization; Do and Don't Examples (DON'T expose "
          "insecure APIs)",
    severity="critical",
    levels=levels(dev="mandatory"),
    remediation="REST API: authorization 'AWS_IAM' or 'COGNITO_USER_POOLS'/'CUSTOM' with an authorizer, or "
                "apiKeyRequired true with a usage plan (keys in Secrets Manager); HTTP API: authorizationType "
                "'JWT'/'AWS_IAM'/'CUSTOM'; Lambda function URL: authorizationType 'AWS_IAM'.",
    kind="stack",
)
def inference_api_authenticated(stack: Stack, ctx: Context) -> Iterator[Finding]:
    fronts = stack.of_type(REST_METHOD, HTTP_ROUTE, FUNCTION_URL)
    if not fronts or not _serves_a_model(stack):
        return
    private_apis = [a for a in stack.of_type(REST_API)
                    if "PRIVATE" in [str(t).upper() for t in as_list(a.get("endpointConfiguration.types"))]]
    for r in fronts:
        if r.type == REST_METHOD:
            method, auth, key = r.get("httpMethod"), r.get("authorization"), as_bool(r.get("apiKeyRequired"))
            if isinstance(method, str) and method.upper() == "OPTIONS":
                continue
            if stack.referenced(r, "restApi", r.get("restApi"), private_apis):
                continue        # a PRIVATE API answers only through the VPC's execute-api endpoint
            if opaque(auth) or opaque(key):
                yield undetermined("authorization or apiKeyRequired is not known yet", r)
            elif _open(auth) and key is not True:
                yield violation(f"REST API method {method or '?'} has authorization NONE and no API key: anyone "
                                "on the internet can call the model", r)
        elif r.type == HTTP_ROUTE:
            route, auth = r.get("routeKey"), r.get("authorizationType")
            if isinstance(route, str) and route.upper().startswith("OPTIONS "):
                continue
            if opaque(auth):
                yield undetermined("authorizationType is not known yet", r)
            elif _open(auth) and as_bool(r.get("apiKeyRequired")) is not True:
                yield violation(f"HTTP API route {route or '?'} has no authorizer (authorizationType "
                                f"{auth or 'NONE, the default'}): anyone on the internet can call the model", r)
        else:
            auth = r.get("authorizationType")
            if opaque(auth):
                yield undetermined("authorizationType is not known yet", r)
            elif _open(auth):
                yield violation("the Lambda function URL has authorizationType NONE: anyone on the internet can "
                                "invoke the function in front of the model", r)


REST_API = "aws:apigateway/restApi:RestApi"
METHOD_SETTINGS = "aws:apigateway/methodSettings:MethodSettings"
USAGE_PLAN = "aws:apigateway/usagePlan:UsagePlan"
USAGE_PLAN_KEY = "aws:apigateway/usagePlanKey:UsagePlanKey"
HTTP_STAGE = "aws:apigatewayv2/stage:Stage"
WAF_ASSOCIATION = "aws:wafv2/webAclAssociation:WebAclAssociation"


def _positive(v: Any) -> Tristate:
    n = as_num(v)
    return n if opaque(n) else (isinstance(n, float) and n > 0)


def _rest_api_limits(stack: Stack, api: Resource) -> tuple[Tristate, str]:
    """(True / False / UNKNOWN, why not) for a REST API: stage throttling (MethodSettings), a WAF web ACL on a
    stage, or, when every method requires an API key, usage plans that throttle every key."""
    api_id = api.id or api.get("id")
    for w in stack.of_type(WAF_ASSOCIATION):
        arn = w.get("resourceArn")
        if opaque(arn):
            return UNKNOWN, ""
        if isinstance(arn, str) and isinstance(api_id, str) and f"/restapis/{api_id}/stages/" in arn:
            return True, ""
    for ms in stack.of_type(METHOD_SETTINGS):
        if stack.referenced(ms, "restApi", ms.get("restApi"), [api]):
            rate = _positive(ms.get("settings.throttlingRateLimit"))
            if rate is True or opaque(rate):
                return (True if rate is True else UNKNOWN), ""
    methods = [m for m in stack.of_type(REST_METHOD) if stack.referenced(m, "restApi", m.get("restApi"), [api])
               and str(m.get("httpMethod") or "").upper() != "OPTIONS"]
    plans = [u for u in stack.of_type(USAGE_PLAN)
             if any(stack.referenced(u, "apiStages", get(st, "apiId"), [api]) for st in as_list(u.get("apiStages")))]
    if methods and plans and all(as_bool(m.get("apiKeyRequired")) is True for m in methods):
        keyed = [plan for k in stack.of_type(USAGE_PLAN_KEY)
                 for plan in stack.referenced(k, "usagePlanId", k.get("usagePlanId"), plans)]
        unthrottled = [plan for plan in keyed if _positive(plan.get("throttleSettings.rateLimit")) is not True]
        if keyed and not unthrottled:
            return True, ""
        if unthrottled:
            return False, (f"the API keys' usage plan {unthrottled[0].name} sets no throttleSettings.rateLimit, so "
                           "those keys are not limited")
    return False, "no stage throttling (MethodSettings throttlingRateLimit), no WAF web ACL on a stage"


@rule(
    name="inference-api-rate-limited",
    description="In a stack that serves a model, every API Gateway API in front of it limits request rates: REST "
                "APIs by stage throttling (MethodSettings throttlingRateLimit), a WAF web ACL on the stage, or usage "
                "plans with throttleSettings on every API key when all methods require keys; HTTP APIs by their "
                "stage's default or per-route throttlingRateLimit. The account-wide default is not a limit.",
    must="Rate limiting and DDoS protection",
    guide="Security Considerations > Rate Limiting",
    severity="high",
    levels=levels(dev="advisory"),
    rationale="dev: advisory, a dev API serves its developers only",
    remediation="aws.apigateway.MethodSettings(rest_api=api.id, stage_name=stage.stage_name, method_path='*/*', "
                "settings={'throttling_rate_limit': 10, 'throttling_burst_limit': 20}); or a usage plan with "
                "throttle_settings for every key; HTTP APIs: default_route_settings throttling_rate_limit on the "
                "stage.",
    kind="stack",
)
def inference_api_rate_limited(stack: Stack, ctx: Context) -> Iterator[Finding]:
    apis = stack.of_type(REST_API)
    http_routes = stack.of_type(HTTP_ROUTE)
    if not (apis or http_routes) or not _serves_a_model(stack):
        return
    for api in apis:
        if not [m for m in stack.of_type(REST_METHOD) if stack.referenced(m, "restApi", m.get("restApi"), [api])]:
            continue
        ok, why = _rest_api_limits(stack, api)
        if ok is UNKNOWN:
            yield undetermined("the API's throttling settings are not known yet", api)
        elif ok is False:
            yield violation(f"the REST API in front of the model limits no request rate: {why}; one client can "
                            "exhaust the GPUs", api)
    for api in stack.of_type(HTTP_API):
        if not [r for r in http_routes if stack.referenced(r, "apiId", r.get("apiId"), [api])]:
            continue
        stages = [s for s in stack.of_type(HTTP_STAGE) if stack.referenced(s, "apiId", s.get("apiId"), [api])]
        rates = [_positive(s.get("defaultRouteSettings.throttlingRateLimit")) for s in stages] + \
            [_positive(get(rs, "throttlingRateLimit")) for s in stages for rs in as_list(s.get("routeSettings"))]
        if True in rates:
            continue
        if any(opaque(r) for r in rates):
            yield undetermined("the stage's throttling is not known yet", api)
        else:
            yield violation("the HTTP API in front of the model sets no throttlingRateLimit on its stage: one client "
                            "can exhaust the GPUs", api)


@rule(
    name="sagemaker-endpoint-encrypted",
    description="SageMaker endpoint configurations encrypt the ML storage volumes of their instances with a KMS "
                "key (kmsKeyArn): the weights and any captured data rest there.",
    must="Encryption at rest",
    guide="Security Considerations > Data Privacy and Compliance",
    severity="medium",
    levels=levels(dev="advisory"),
    rationale="dev: advisory, a dev endpoint holds no production data",
    remediation="kms_key_arn=key.arn on aws.sagemaker.EndpointConfiguration (a customer-managed key with "
                "rotation); data capture destinations get the same key.",
    types=(SM_ENDPOINT_CONFIG,),
)
def sagemaker_encrypted(r: Resource, ctx: Context) -> Iterator[Finding]:
    key = r.get("kmsKeyArn")
    if key is None or (isinstance(key, str) and not key.strip()):
        variants = [v for v in as_list(r.get("productionVariants")) if isinstance(v, dict)]
        if variants and all(get(v, "serverlessConfig") is not None for v in variants):
            return       # serverless endpoints have no instance volume to encrypt
        yield violation("the endpoint configuration has no kmsKeyArn: the instances' ML storage volumes (weights, "
                        "captured data) are not encrypted with a customer-managed key")


RULES = [inference_api_authenticated, inference_api_rate_limited, sagemaker_encrypted]
