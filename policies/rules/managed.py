"""Managed fronts and hosting: API Gateway REST and HTTP APIs and Lambda function URLs in front of a model
(authentication), SageMaker endpoints (encryption of their volumes). A public method with no authorizer
and no API key on a stack that serves a model is a keyless inference API on the internet."""
from __future__ import annotations

import re

from ..core import as_bool, as_list, get, levels, opaque, rule, undetermined, violation
from ..topology import SM_ENDPOINT_CONFIG, topology
from ..workloads import SAGEMAKER_MODEL

REST_METHOD = "aws:apigateway/method:Method"
HTTP_ROUTE = "aws:apigatewayv2/route:Route"
HTTP_API = "aws:apigatewayv2/api:Api"
FUNCTION_URL = "aws:lambda/functionUrl:FunctionUrl"
SM_ENDPOINT = "aws:sagemaker/endpoint:Endpoint"
_SAGEMAKER_URI = re.compile(r"runtime\.sagemaker|:sagemaker:", re.I)


def _serves_a_model(stack) -> bool:
    """The stack runs an inference server or hosts a model (SageMaker): its public APIs front it."""
    if stack.of_type(SAGEMAKER_MODEL, SM_ENDPOINT):
        return True
    return bool(topology(stack).inference_groups())


def _open(value) -> bool:
    return value is None or (isinstance(value, str) and value.strip().upper() == "NONE")


@rule(
    name="inference-api-authenticated",
    description="In a stack that serves a model, no API Gateway REST method (authorization NONE without "
                "apiKeyRequired), HTTP API route (authorizationType NONE, the default) or Lambda function URL "
                "(authorizationType NONE) is callable by anyone: each checks IAM, a Cognito/JWT/Lambda authorizer "
                "or an API key. CORS preflight (OPTIONS) routes are exempt.",
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
def inference_api_authenticated(stack, ctx):
    fronts = stack.of_type(REST_METHOD, HTTP_ROUTE, FUNCTION_URL)
    if not fronts or not _serves_a_model(stack):
        return
    for r in fronts:
        if r.type == REST_METHOD:
            method, auth, key = r.get("httpMethod"), r.get("authorization"), as_bool(r.get("apiKeyRequired"))
            if isinstance(method, str) and method.upper() == "OPTIONS":
                continue
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
def sagemaker_encrypted(r, ctx):
    key = r.get("kmsKeyArn")
    if key is None or (isinstance(key, str) and not key.strip()):
        variants = [v for v in as_list(r.get("productionVariants")) if isinstance(v, dict)]
        if variants and all(get(v, "serverlessConfig") is not None for v in variants):
            return       # serverless endpoints have no instance volume to encrypt
        yield violation("the endpoint configuration has no kmsKeyArn: the instances' ML storage volumes (weights, "
                        "captured data) are not encrypted with a customer-managed key")


RULES = [inference_api_authenticated, sagemaker_encrypted]
