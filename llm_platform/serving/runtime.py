"""Container specs for vLLM, Ollama and TGI, from a DeploymentPlan. Pure: no Pulumi, no arithmetic.

Every flag comes from the plan or the stack config; this module only spells them the way each
server wants them. Why each flag is set:
- the served model name is the deployment name, so clients address `model: <name>`;
- TP/PP, context, sequences, prefill chunk, memory fraction and vLLM's KV pool
  (--kv-cache-memory-bytes; TGI's --max-batch-total-tokens) are the planner's numbers: the memory
  model holds only if the server runs with them, and the server then holds exactly the planned sequences;
- weights are read from the verified local copy (HF_HUB_OFFLINE=1): nothing is fetched at run time;
- request logging stays off (the guide: no prompts in logs); usage telemetry is off;
- remote code only where the registry allows it for that model (the schema enforces it).
Network exposure: every runtime (vLLM, TGI and Ollama) runs on the user-defined bridge network
`llm` with its port published to the host's 127.0.0.1 only (for the CloudWatch agent's scrape);
the proxy reaches it there by container name. No container uses the host network: a container in
its own network namespace is one hop further from the instance metadata service, which the
launch template's hop limit of 1 makes unreachable, so code a model brings cannot take the
instance role's credentials. Only the TLS and auth proxy publishes a port beyond loopback.

Multi-node replicas (a LeaderWorkerSet on EKS) use vLLM's own multiprocessing backend across nodes
(`--nnodes`, `--node-rank`, `--master-addr`, `--master-port`; workers `--headless`): the stock image
no longer ships Ray. Every vLLM command line is checked against the pinned release's parser in
tests (serving/vllm_cli.py).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field

from llm_platform import catalog
from llm_platform.sizing.planner import DeploymentPlan

MODEL_DIR = "/opt/llm/model"          # verified weights on the instance, mounted read-only
CACHE_DIR = "/opt/llm/cache"          # compile and kernel caches (torch.compile, Triton): writable
PORTS = {"vllm": 8000, "ollama": 11434, "tgi": 8080}
DOCKER_NETWORK = "llm"                # user-defined bridge network of the runtime and the proxy (EC2)
RUNTIME_CONTAINER = "llm-runtime"     # its name there: the proxy's upstream host
MASTER_PORT = 29501                   # vLLM's default --master-port: torch.distributed rendezvous on the leader
HEALTH_PATHS = {"vllm": "/health", "ollama": "/", "tgi": "/health"}
METRICS_PATHS = {"vllm": "/metrics", "ollama": None, "tgi": "/metrics"}

VLLM_QUANTIZATION = {"fp8": "fp8", "awq": "awq_marlin", "gptq": "gptq_marlin"}
TGI_QUANTIZATION = {"fp8": "fp8", "awq": "awq", "gptq": "gptq"}
DTYPES = {"bf16": "bfloat16", "fp16": "float16"}


@dataclass(frozen=True)
class ImageRef:
    pinned: str            # what runs: <repository>@sha256:<digest>
    warm: str | None    # pulled first by tag to fill the ECR pull-through cache; None for overrides


def image_ref(key: str, registry: str, override: str | None = None) -> ImageRef:
    """Through the stack's ECR pull-through cache, pinned by digest; or the stack's own override."""
    if override:
        return ImageRef(pinned=override, warm=None)
    img = catalog.load().images[key]
    repo = f"{registry}/{img['cache_prefix']}/{img['repository']}"
    return ImageRef(pinned=f"{repo}@{img['digest']}", warm=f"{repo}:{img['tag']}")


def cache_repository(key: str) -> str | None:
    """The ECR repository an image lands in through the pull-through cache (<prefix>/<repository>), which
    the stack creates (no instance may create repositories); None for an image that is not available."""
    img = catalog.load().images[key]
    if not img.get("available", True):
        return None
    return f"{img['cache_prefix']}/{img['repository']}"


@dataclass(frozen=True)
class ContainerSpec:
    name: str
    image_key: str
    args: tuple[str, ...]
    env: dict[str, str] = field(default_factory=dict)
    publish: tuple[str, ...] = ()          # docker -p values, always bound to 127.0.0.1
    gpus: bool = True
    mounts: tuple[str, ...] = ()
    extra: tuple[str, ...] = ()            # further docker run options
    command: tuple[str, ...] = ()          # executable (+ subcommand) instead of the image's entrypoint
    port: int = 0
    health_path: str = "/health"
    metrics_path: str | None = None


COMMON_ENV = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "DO_NOT_TRACK": "1"}
CACHE_ENV = {"HOME": "/cache", "USER": "llm", "LOGNAME": "llm", "XDG_CACHE_HOME": "/cache",
             "HF_HOME": "/cache/huggingface", "VLLM_CACHE_ROOT": "/cache/vllm",
             "VLLM_CONFIG_ROOT": "/cache/vllm-config",
             "TRITON_CACHE_DIR": "/cache/triton", "TORCHINDUCTOR_CACHE_DIR": "/cache/inductor"}
HARDENING = ("--security-opt", "no-new-privileges", "--cap-drop", "ALL", "--read-only", "--tmpfs", "/tmp:rw,size=4g",
             "--restart", "no", "--log-driver", "journald")


def container_spec(plan: DeploymentPlan, max_tokens: int, host: str = "0.0.0.0") -> ContainerSpec:
    """`host`: the address vLLM/TGI bind inside their network namespace. 0.0.0.0 behind docker's
    127.0.0.1-only publish (EC2); 127.0.0.1 in a pod, where the proxy sidecar shares the namespace."""
    return {"vllm": _vllm, "ollama": _ollama, "tgi": _tgi}[plan.runtime](plan, max_tokens, host)


def _vllm(plan: DeploymentPlan, max_tokens: int, host: str = "0.0.0.0") -> ContainerSpec:
    port = PORTS["vllm"]
    # the model path is positional: `vllm serve --model` is deprecated and being removed
    args = ["/model", "--served-model-name", plan.name,
            "--host", host, "--port", str(port),
            "--tensor-parallel-size", str(plan.tensor_parallel_size),
            "--pipeline-parallel-size", str(plan.pipeline_parallel_size),
            "--max-model-len", str(plan.max_model_len),
            "--max-num-seqs", str(plan.concurrency),
            "--max-num-batched-tokens", str(plan.max_num_batched_tokens),
            "--gpu-memory-utilization", str(plan.gpu_memory_utilization),
            "--uvicorn-log-level", "warning"]
    if plan.precision in DTYPES:
        args += ["--dtype", DTYPES[plan.precision]]
    if plan.precision in VLLM_QUANTIZATION:
        args += ["--quantization", VLLM_QUANTIZATION[plan.precision]]
    if plan.kv_cache_dtype == "fp8":
        args += ["--kv-cache-dtype", "fp8"]
    if plan.task == "embed":
        args += ["--runner", "pooling"]
    else:
        # the default completion length when a request gives none; vLLM still caps every request
        # at max_model_len minus the prompt
        args += ["--generation-config", "vllm",
                 "--override-generation-config", json.dumps({"max_new_tokens": max_tokens}, separators=(",", ":"))]
    if plan.trust_remote_code:
        args.append("--trust-remote-code")
    if plan.task == "generate" and plan.kv_cache_memory_bytes:
        # The plan is the configuration: vLLM skips its own profiling-based KV sizing and allocates exactly
        # the pool the plan sized (concurrency x max_model_len tokens in whole pages per GPU), so the server
        # holds the planned sequences and never fewer; --gpu-memory-utilization stays as vLLM's start-up
        # check that the GPU is free enough (vllm/v1/worker/gpu_worker.py, Worker.init_device).
        args += ["--kv-cache-memory-bytes", str(plan.kv_cache_memory_bytes)]
    # The root filesystem is read-only: every cache vLLM, torch and Triton keep goes to /cache. USER and
    # HOME are set because a non-root uid without a passwd entry (Kubernetes) makes torch's getpass fail.
    env = {**COMMON_ENV, "VLLM_NO_USAGE_STATS": "1", "VLLM_DO_NOT_TRACK": "1", **CACHE_ENV}
    return ContainerSpec(name="llm-runtime", image_key="vllm", args=tuple(args), env=env,
                         publish=(f"127.0.0.1:{port}:{port}",),
                         mounts=(f"{MODEL_DIR}:/model:ro", f"{CACHE_DIR}:/cache"), command=("vllm", "serve"),
                         extra=("--shm-size", "16g"), port=port, health_path=HEALTH_PATHS["vllm"],
                         metrics_path=METRICS_PATHS["vllm"])


def _ollama(plan: DeploymentPlan, max_tokens: int, host: str = "0.0.0.0") -> ContainerSpec:
    port = PORTS["ollama"]
    # Through the proxy clients reach only Ollama's OpenAI-compatible routes (proxy.py): there,
    # max_tokens becomes num_predict and nothing can change num_ctx from OLLAMA_CONTEXT_LENGTH.
    env = {"OLLAMA_HOST": f"{host}:{port}",
           "OLLAMA_MODELS": "/model",
           "OLLAMA_NUM_PARALLEL": str(plan.concurrency),
           "OLLAMA_CONTEXT_LENGTH": str(plan.max_model_len),
           "OLLAMA_KEEP_ALIVE": "-1",            # keep the model loaded: a cold load is seconds per request
           "OLLAMA_MAX_LOADED_MODELS": "1",
           "OLLAMA_MAX_QUEUE": str(plan.concurrency * 8),
           "OLLAMA_NOPRUNE": "1",                # never delete verified blobs
           **({"OLLAMA_FLASH_ATTENTION": "1", "OLLAMA_KV_CACHE_TYPE": plan.kv_cache_dtype}
              if plan.kv_cache_dtype != "auto" else {})}
    return ContainerSpec(name="llm-runtime", image_key="ollama", args=("serve",), env=env,
                         publish=(f"127.0.0.1:{port}:{port}",), mounts=(f"{MODEL_DIR}:/model:ro",),
                         extra=("--tmpfs", "/root/.ollama:rw,size=16m"),
                         port=port, health_path=HEALTH_PATHS["ollama"],
                         metrics_path=None)


def ollama_model_parameters(plan: DeploymentPlan, max_tokens: int) -> dict[str, int]:
    """The Modelfile PARAMETERs the stage command bakes into a staged Ollama model (its params layer):
    the plan's context as num_ctx and api.max_tokens as num_predict. Ollama takes a request's options
    over these, but through the proxy only its OpenAI-compatible routes are reachable, where num_ctx
    cannot be set at all and num_predict only through max_tokens: a request that gives none gets
    api.max_tokens (as vLLM's --override-generation-config does), instead of Ollama's unbounded -1."""
    return {"num_ctx": plan.max_model_len, "num_predict": max_tokens}


def _tgi(plan: DeploymentPlan, max_tokens: int, host: str = "0.0.0.0") -> ContainerSpec:
    port = PORTS["tgi"]
    args = ["--model-id", "/model", "--hostname", host, "--port", str(port),
            "--num-shard", str(plan.tensor_parallel_size),
            "--max-input-tokens", str(plan.max_model_len - 1),
            "--max-total-tokens", str(plan.max_model_len),
            "--max-batch-prefill-tokens", str(plan.max_num_batched_tokens),
            "--max-concurrent-requests", str(plan.concurrency * 8),
            # TGI has no KV-bytes flag: the plan's pool is this many tokens in the running batch; TGI
            # checks it against what --cuda-memory-fraction leaves after its warm-up and refuses less.
            # TGI also refuses a prefill budget above it, so it is at least one prefill chunk.
            "--max-batch-total-tokens",
            str(max(plan.concurrency * plan.max_model_len, plan.max_num_batched_tokens)),
            "--cuda-memory-fraction", str(plan.gpu_memory_utilization),
            "--usage-stats", "off"]
    if plan.precision in TGI_QUANTIZATION:
        args += ["--quantize", TGI_QUANTIZATION[plan.precision]]
    elif plan.precision in DTYPES:
        args += ["--dtype", DTYPES[plan.precision]]
    if plan.kv_cache_dtype == "fp8":
        args += ["--kv-cache-dtype", "fp8_e4m3fn"]
    if plan.trust_remote_code:
        args.append("--trust-remote-code")
    return ContainerSpec(name="llm-runtime", image_key="tgi", args=tuple(args), env=dict(COMMON_ENV),
                         publish=(f"127.0.0.1:{port}:{port}",),
                         mounts=(f"{MODEL_DIR}:/model:ro", f"{CACHE_DIR}:/data"),
                         extra=("--shm-size", "16g"), port=port, health_path=HEALTH_PATHS["tgi"],
                         metrics_path=METRICS_PATHS["tgi"])


def vllm_multinode_args(plan: DeploymentPlan, node_rank: str, leader_address: str) -> list[str]:
    """Flags that make one node of a multi-node replica: vLLM's multiprocessing executor spans the
    nodes (TP x PP ranks split evenly, `gpus_per_node` each); node 0 serves the API, the others run
    headless workers that join the leader's torch.distributed rendezvous. `node_rank` and
    `leader_address` may be Kubernetes `$(VAR)` references (LWS_WORKER_INDEX, LWS_LEADER_ADDRESS)."""
    if plan.runtime != "vllm" or plan.nodes_per_replica < 2:
        raise ValueError(f"{plan.name}: multi-node flags are for vLLM replicas spanning nodes")
    args = ["--distributed-executor-backend", "mp", "--nnodes", str(plan.nodes_per_replica),
            "--node-rank", node_rank, "--master-addr", leader_address, "--master-port", str(MASTER_PORT)]
    if node_rank != "0":
        args.append("--headless")
    return args


def docker_run(spec: ContainerSpec, image: str) -> list[str]:
    """The `docker run` argv for a spec (systemd runs it in the foreground)."""
    argv = ["docker", "run", "--rm", "--name", spec.name, *HARDENING]
    if spec.command:
        argv += ["--entrypoint", spec.command[0]]
    if spec.gpus:
        argv += ["--gpus", "all"]
    argv += ["--network", DOCKER_NETWORK]
    for p in spec.publish:
        argv += ["-p", p]
    for m in spec.mounts:
        argv += ["-v", m]
    for k, v in sorted(spec.env.items()):
        argv += ["-e", f"{k}={v}"]
    argv += list(spec.extra)
    argv.append(image)
    argv += list(spec.command[1:]) + list(spec.args)
    return argv
