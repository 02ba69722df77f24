"""llm-platform: self-hosted LLM inference on AWS with Pulumi.

Layers, each a subpackage:
  catalog     facts with sources: GPU instances, prices, models, runtime memory accounting (YAML data)
  settings    the stack configuration schema (pydantic) and its errors with key paths
  sizing      the physics: parameters, weight bytes, KV cache, overheads, step times, the planner
  serving     pure renderers: runtime flags, nginx, cloud-init, telemetry config, subnets, verify script
  components  Pulumi ComponentResources with typed Args (no sizing, no settings)
  program     the stack program: StackConfig -> plans -> component Args -> one platform component
  offline     the recording mocks harness: run any Pulumi Python program with no cloud and no CLI
  policies    the CrossGuard policy pack's engine and rules
Pure layers (catalog, settings, sizing, serving, policies core) import no Pulumi.
"""
__version__ = "0.3.0"
