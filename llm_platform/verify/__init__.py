"""The deploy gate: drive a deployed endpoint with the load its plan states and judge it against the plan.

    python -m llm_platform.verify --stack prod --model llama-70b --endpoint https://llama-70b.<domain>/v1

Pure client and comparison logic (no Pulumi): spec.py (what the plan promises), schedule.py (when requests
go out), client.py (streaming OpenAI-compatible requests on httpx), judge.py (measured vs planned),
report.py (text, JSON and the measurement record), publish.py (S3 and CloudWatch, boto3), jobs.py (the
Kubernetes Job and ECS task shapes the deploy workflow starts), __main__.py (the command line).
Exit 0: the deployment meets its plan; 1: it misses (each missed metric named); 2: the gate could not run.
"""
EXIT_PASS, EXIT_MISS, EXIT_CANNOT_RUN = 0, 1, 2


class CannotRun(Exception):
    """The gate could not judge the deployment (unreachable, auth refused, no plan): exit 2."""
