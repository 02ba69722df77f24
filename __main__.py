"""The Pulumi program: `pulumi up` runs this per stack; plan.py and the tests run it under mocks."""
import pulumi

from components import stack_config
from components.llm_platform import LlmPlatform
from settings import ConfigErrors
from sizing.planner import PlanningError, plan_stack

try:
    config = stack_config.load()
    plans = plan_stack(config)
except (ConfigErrors, PlanningError) as exc:
    # RunError: reported to the user without a Python traceback, before any resource exists.
    raise pulumi.RunError(str(exc)) from None

platform = LlmPlatform(f"llm-{pulumi.get_stack()}", config, plans)
pulumi.export("deployments", {p.name: p.as_dict() for p in plans})
pulumi.export("monthly_cost_usd", round(sum(p.monthly_cost_usd for p in plans), 2))
