"""How an EC2 model group gets and keeps GPU capacity: the Auto Scaling inputs GpuInstanceGroup passes on.

Pure mappings from the DeploymentPlan (sizing/fallbacks.py did the arithmetic) to Auto Scaling group inputs:

- mixed instances policy: one override per type (chosen first, then the plan's fallbacks in price order), each
  with its own launch template (its own TP, runtime flags and volume) and its weighted capacity; `prioritized`
  on-demand allocation, so the group launches the chosen type whenever EC2 has it and the next type when not.
- sizes in capacity units (a chosen-type replica is UNITS_PER_REPLICA units), so a slower fallback launches
  more instances for the same capacity, and the group holds the stated load whichever types it got.
- no capacity rebalancing: it replaces Spot instances at elevated interruption risk, and these groups are
  on-demand only (the mixed instances policy mixes types, not purchase options).
- target tracking on waiting requests per capacity unit (metric math over the runtime's queue metric and the
  group's in-service instances and capacity): with only chosen-type instances it is the plain per-instance
  queue target, with slower fallbacks in the mix it scales out earlier.
- a warm pool of Stopped instances that already pulled the image and downloaded and verified the weights
  (serving/userdata.py prepares them and completes the launch lifecycle hook), reused on scale-in.
- a launch lifecycle hook that holds each instance until it is ready: warm-pool preparation, or the runtime
  answering its health check before the instance goes InService.
- capacity reservations (On-Demand Capacity Reservations first or only), or a Capacity Block for ML.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from llm_platform.sizing.fallbacks import UNITS_PER_REPLICA, capacity_units
from llm_platform.sizing.planner import DeploymentPlan

LIFECYCLE_HOOK = "llm-launch"           # serving/userdata.py completes it by this name
MAX_HEARTBEAT_S = 7200                  # the Auto Scaling maximum for a lifecycle hook's heartbeat timeout
@dataclass(frozen=True)
class ReservationOptions:
    """Reserved capacity to launch into: On-Demand Capacity Reservations, or Capacity Blocks for ML."""
    ids: tuple[str, ...]
    preference: str = "capacity-reservations-first"      # or capacity-reservations-only
    capacity_block: bool = False                          # launch only into the block (market type capacity-block)


@dataclass(frozen=True)
class CapacityOptions:
    """How a model's group gets and keeps GPUs (components never read the stack config: the program maps the
    model entry's `capacity` block to this)."""
    fallbacks: bool = True
    max_fallbacks: int = 3
    warm_pool: bool = False
    reservations: ReservationOptions | None = None
    model_snapshot_id: str | None = None
    fast_snapshot_restore: bool = False


GROUP_METRICS = ["GroupInServiceInstances", "GroupInServiceCapacity", "GroupDesiredCapacity",
                 "GroupPendingInstances", "GroupTotalCapacity", "WarmPoolWarmedCapacity", "WarmPoolDesiredCapacity"]


def types_in_order(plan: DeploymentPlan) -> list[str]:
    return [plan.instance_type, *(f.instance_type for f in plan.fallbacks)]


def sizes(plan: DeploymentPlan) -> dict:
    """min/max (and desired for fixed groups) in capacity units."""
    units = capacity_units(plan)
    fixed = plan.replicas_max == plan.replicas_min
    return {"min_size": units["min"] * plan.nodes_per_replica, "max_size": units["max"] * plan.nodes_per_replica,
            "desired_capacity": units["min"] * plan.nodes_per_replica if fixed else None}


def mixed_instances_policy(plan: DeploymentPlan, templates: Mapping[str, dict]) -> dict:
    """`templates`: instance type -> {"launch_template_id": ..., "version": ...} (the chosen type's is the group's
    default template)."""
    weights = capacity_units(plan)["weights"]
    return {
        "instances_distribution": {"on_demand_allocation_strategy": "prioritized", "on_demand_base_capacity": 0,
                                   "on_demand_percentage_above_base_capacity": 100},
        "launch_template": {
            "launch_template_specification": dict(templates[plan.instance_type]),
            # the order is the priority: chosen type, then fallbacks cheapest per unit of capacity first
            "overrides": [{"instance_type": t, "weighted_capacity": str(weights[t]),
                           "launch_template_specification": dict(templates[t])} for t in types_in_order(plan)],
        },
    }


def warm_pool(plan: DeploymentPlan, capacity: CapacityOptions | None) -> dict | None:
    """Stopped instances for the autoscaling headroom (at least one, which also replaces an unhealthy instance
    without a cold start); None when the model's capacity.warm_pool is off."""
    if capacity is None or not capacity.warm_pool:
        return None
    headroom = max(1, plan.replicas_max - plan.replicas_min) * plan.nodes_per_replica
    return {"pool_state": "Stopped", "min_size": headroom, "max_group_prepared_capacity": sizes(plan)["max_size"],
            "instance_reuse_policy": {"reuse_on_scale_in": True}}


def lifecycle_hook(plan: DeploymentPlan) -> dict:
    """Held until the instance reports ready (warm-pool preparation or serving); abandoned (terminated) if it never
    does within twice its cold start."""
    cold = plan.startup.cold_seconds if plan.startup else plan.startup_seconds
    return {"name": LIFECYCLE_HOOK, "lifecycle_transition": "autoscaling:EC2_INSTANCE_LAUNCHING",
            "heartbeat_timeout": min(MAX_HEARTBEAT_S, 2 * cold), "default_result": "ABANDON"}


def warmups(plan: DeploymentPlan, capacity: CapacityOptions | None) -> dict:
    """Seconds: health-check grace (a cold start: replacements and refreshes launch cold), instance warm-up for
    scaling (a warm-pool start when the group has a warm pool, else cold)."""
    s = plan.startup
    cold = s.cold_seconds if s else plan.startup_seconds
    warm = s.warm_pool_seconds if s and s.warm_pool_seconds and capacity and capacity.warm_pool else cold
    return {"grace": cold, "scaling": warm}


def queue_per_unit(plan: DeploymentPlan, asg_name, queue_metric: str, namespace: str, target: float) -> dict:
    """Target tracking configuration: waiting requests per capacity unit, `target` per chosen-type replica."""
    def stat(id_: str, name: str, ns: str, dims: list, period_stat: str = "Average") -> dict:
        return {"id": id_, "return_data": False, "metric_stat": {"stat": period_stat, "metric": {
            "metric_name": name, "namespace": ns, "dimensions": dims}}}
    group = [{"name": "AutoScalingGroupName", "value": asg_name}]
    return {"target_value": target / UNITS_PER_REPLICA, "customized_metric_specification": {"metrics": [
        stat("queue", queue_metric, namespace, [{"name": "deployment", "value": plan.name}]),
        stat("instances", "GroupInServiceInstances", "AWS/AutoScaling", group),
        stat("units", "GroupInServiceCapacity", "AWS/AutoScaling", group),
        {"id": "per_unit", "expression": "queue * instances / units", "label": "waiting requests per capacity unit",
         "return_data": True}]}}


def reservation(capacity: CapacityOptions | None) -> tuple[dict | None, dict | None]:
    """(the group's capacity_reservation_specification, the launch templates' market and reservation options)."""
    res = capacity.reservations if capacity else None
    if res is None:
        return None, None
    if res.capacity_block:
        return None, {"instance_market_options": {"market_type": "capacity-block"},
                      "capacity_reservation_specification": {"capacity_reservation_target": {
                          "capacity_reservation_id": res.ids[0]}}}
    return {"capacity_reservation_preference": res.preference,
            "capacity_reservation_target": {"capacity_reservation_ids": list(res.ids)}}, None
