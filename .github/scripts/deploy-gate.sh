#!/usr/bin/env bash
# The deploy gate in the deploy workflow (.github/workflows/deploy.yml): after `pulumi up`, every model of the
# stack is driven with its planned load from inside the VPC and judged against its plan (llm_platform/verify).
#
#   deploy-gate.sh record  STACK OUT       launch-template version of each of the stack's Auto Scaling groups
#   deploy-gate.sh settle  STACK          wait until no instance refresh of the stack is pending or running
#   deploy-gate.sh image   STACK          build and push this commit's gate image unless its content tag is in
#                                         ECR (before `pulumi up`, which pins its digest; a no-op until the
#                                         stack's gate repository exists: the first `pulumi up` makes it)
#   deploy-gate.sh run     GATE_JSON      one gate run per model, all at once (ECS task on ec2, Job on eks);
#                                         exit 1 if any model misses its plan, 2 if any gate could not run
#   deploy-gate.sh rollback STACK BEFORE  undo the stack's rollouts: roll back a refresh still in progress
#                                         (rollback-instance-refresh), else refresh back to the recorded version
#
# GATE_JSON is `pulumi stack output gate --json` (components/gate.py). Needs: aws CLI v2, jq, docker (image),
# kubectl (eks). Reports are printed (JSON) and kept in s3://<model store>/gate/<stack>/.
set -euo pipefail

POLL_SECONDS=${POLL_SECONDS:-20}
SETTLE_TIMEOUT=${SETTLE_TIMEOUT:-7200}       # an instance refresh waits instance_warmup (the plan's startup) per batch
GATE_TIMEOUT=${GATE_TIMEOUT:-3600}

groups_of() {   # the stack's Auto Scaling groups (GpuInstanceGroup tags llm-platform:stack)
  aws autoscaling describe-auto-scaling-groups --filters "Name=tag:llm-platform:stack,Values=$1" \
    --query 'AutoScalingGroups[].AutoScalingGroupName' --output text | tr '\t' '\n' | sed '/^$/d'
}

latest_refresh() {   # status of the group's newest instance refresh, or None
  aws autoscaling describe-instance-refreshes --auto-scaling-group-name "$1" --max-records 1 \
    --query 'InstanceRefreshes[0].Status' --output text
}

record() {
  local stack=$1 out=$2 g
  : > "$out"
  for g in $(groups_of "$stack"); do
    aws autoscaling describe-auto-scaling-groups --auto-scaling-group-names "$g" \
      --query 'AutoScalingGroups[0].[AutoScalingGroupName,LaunchTemplate.LaunchTemplateId,LaunchTemplate.Version]' \
      --output text >> "$out"
  done
  echo "recorded $(wc -l < "$out") Auto Scaling group(s) of $stack"
}

settle() {
  local stack=$1 deadline=$((SECONDS + SETTLE_TIMEOUT)) g status busy
  while :; do
    busy=0
    for g in $(groups_of "$stack"); do
      status=$(latest_refresh "$g")
      case "$status" in
        Pending|InProgress|Cancelling|RollbackInProgress|Baking) busy=1; echo "$g: instance refresh $status" ;;
        Failed|Cancelled|RollbackSuccessful|RollbackFailed)
          echo "::error::$g: the instance refresh ended $status: not gating a fleet that did not roll out"; return 2 ;;
      esac
    done
    [ "$busy" = 0 ] && return 0
    [ "$SECONDS" -lt "$deadline" ] || { echo "::error::instance refreshes still running after ${SETTLE_TIMEOUT}s"; return 2; }
    sleep "$POLL_SECONDS"
  done
}

image() {
  local stack=$1 name tag registry
  name="llm-platform/$stack/deploy-gate"
  tag=$(${PYTHON:-.venv/bin/python} -m llm_platform.verify.jobs image-tag)
  if ! aws ecr describe-repositories --repository-names "$name" >/dev/null 2>&1; then
    echo "no repository $name yet: \`pulumi up\` makes it, then the image is pushed and the stack updated again"
    return 0
  fi
  if aws ecr describe-images --repository-name "$name" --image-ids "imageTag=$tag" >/dev/null 2>&1; then
    echo "gate image $name:$tag is in ECR"; return 0
  fi
  registry="$(aws sts get-caller-identity --query Account --output text).dkr.ecr.${AWS_REGION:-us-east-1}.amazonaws.com"
  aws ecr get-login-password | docker login --username AWS --password-stdin "$registry"
  docker build -f llm_platform/verify/Dockerfile -t "$registry/$name:$tag" .
  docker push "$registry/$name:$tag"
}

REPORTS=${REPORTS:-$(mktemp -d)}

keep_report() {   # print the model's JSON report and file it under the gate's results prefix (S3, from outside)
  local gate=$1 model=$2
  echo "::group::$model: gate report"; cat "$REPORTS/$model.json"; echo "::endgroup::"
  if [ -s "$REPORTS/$model.json" ]; then
    aws s3 cp --only-show-errors "$REPORTS/$model.json" \
      "$(jq -r .results "$gate")/$model/$(date -u +%Y%m%dT%H%M%SZ).json" || echo "::warning::$model: report not filed in S3"
  fi
}

start_ecs() {   # $1 gate json, $2 model; prints the task ARN
  local gate=$1 model=$2 overrides network
  overrides=$(jq -c --arg m "$model" '{containerOverrides: [{name: .ecs.container,
    command: (.ecs.command + ["--model", $m, "--endpoint", .ecs.endpoints[$m]])}]}' "$gate")
  network=$(jq -c '{awsvpcConfiguration: {subnets: .ecs.subnets, securityGroups: .ecs.security_groups,
    assignPublicIp: "DISABLED"}}' "$gate")
  aws ecs run-task --cluster "$(jq -r .ecs.cluster "$gate")" --task-definition "$(jq -r .ecs.task_definition "$gate")" \
    --launch-type FARGATE --network-configuration "$network" --overrides "$overrides" \
    --started-by "deploy-gate" --query 'tasks[0].taskArn' --output text
}

wait_ecs() {   # $1 gate json, $2 model, $3 task ARN; prints the report, returns the gate's exit code
  local gate=$1 model=$2 task=$3 cluster code deadline=$((SECONDS + GATE_TIMEOUT))
  cluster=$(jq -r .ecs.cluster "$gate")
  if [ -z "$task" ] || [ "$task" = "None" ]; then echo "::error::$model: ECS did not start the gate task"; return 2; fi
  until aws ecs wait tasks-stopped --cluster "$cluster" --tasks "$task" 2>/dev/null; do
    [ "$SECONDS" -lt "$deadline" ] || { aws ecs stop-task --cluster "$cluster" --task "$task" >/dev/null; return 2; }
  done
  aws logs get-log-events --log-group-name "$(jq -r .ecs.log_group "$gate")" \
    --log-stream-name "gate/$(jq -r .ecs.container "$gate")/${task##*/}" --query 'events[].message' --output json \
    | jq -r '.[]' > "$REPORTS/$model.json" || true
  keep_report "$gate" "$model"
  code=$(aws ecs describe-tasks --cluster "$cluster" --tasks "$task" \
    --query "tasks[0].containers[?name=='gate'].exitCode | [0]" --output text)
  [[ "$code" =~ ^[0-9]+$ ]] || code=2          # never started (image pull, secret): the gate could not run
  return "$code"
}

start_eks() {   # prints the Job's name (job.batch/...)
  jq -c --arg m "$2" '.jobs[$m]' "$1" | kubectl create -f - -o name
}

wait_eks() {
  local model=$2 job=$3 ns="llm-$2" state code deadline=$((SECONDS + GATE_TIMEOUT))
  while :; do
    state=$(kubectl get -n "$ns" "$job" -o jsonpath='{.status.conditions[?(@.status=="True")].type}')
    case "$state" in *Complete*|*Failed*) break ;; esac
    [ "$SECONDS" -lt "$deadline" ] || { kubectl delete -n "$ns" "$job" --wait=false; return 2; }
    sleep "$POLL_SECONDS"
  done
  kubectl logs -n "$ns" "$job" > "$REPORTS/$model.json" || true
  keep_report "$1" "$model"
  code=$(kubectl get pods -n "$ns" -l "job-name=${job#job.batch/}" \
    -o jsonpath='{.items[0].status.containerStatuses[0].state.terminated.exitCode}')
  [[ "$code" =~ ^[0-9]+$ ]] || code=2
  return "$code"
}

run() {   # every model's gate at once (separate fleets), then their verdicts
  local gate=$1 runner=ecs model code verdict worst=0
  local -A runs=()
  if [ "$(jq -r .platform "$gate")" = eks ]; then
    runner=eks
    aws eks update-kubeconfig --name "$(jq -r .cluster_name "$gate")" >/dev/null
  fi
  for model in $(jq -r '.models[]' "$gate"); do
    runs[$model]=$("start_$runner" "$gate" "$model" || true)
    echo "$model: ${runs[$model]:-not started}"
  done
  for model in $(jq -r '.models[]' "$gate"); do
    code=0
    "wait_$runner" "$gate" "$model" "${runs[$model]}" || code=$?
    case "$code" in
      0) verdict=pass; echo "$model: meets its plan" ;;
      1) verdict=fail; echo "::error::$model: misses its plan (see its report)" ;;
      *) verdict="could not run"; code=2; echo "::error::$model: the gate could not run" ;;
    esac
    if [ "$code" -gt "$worst" ]; then worst=$code; fi       # 2 (could not run) over 1 (missed) over 0
    echo "| $model | $verdict | exit $code |" >> "${GITHUB_STEP_SUMMARY:-/dev/null}"
  done
  return "$worst"
}

rollback() {
  local stack=$1 before=$2 g lt version status
  while read -r g lt version; do
    [ -n "$g" ] || continue
    status=$(latest_refresh "$g")
    if [ "$status" = InProgress ] || [ "$status" = Pending ]; then
      echo "$g: rolling back the instance refresh in progress"
      aws autoscaling rollback-instance-refresh --auto-scaling-group-name "$g"
      continue
    fi
    if [ "$(aws autoscaling describe-auto-scaling-groups --auto-scaling-group-names "$g" \
          --query 'AutoScalingGroups[0].LaunchTemplate.Version' --output text)" != "$version" ]; then
      echo "$g: refreshing back to launch template $lt version $version"
      aws autoscaling start-instance-refresh --auto-scaling-group-name "$g" --strategy Rolling \
        --desired-configuration "{\"LaunchTemplate\":{\"LaunchTemplateId\":\"$lt\",\"Version\":\"$version\"}}" \
        --preferences '{"MinHealthyPercentage":100,"MaxHealthyPercentage":200,"SkipMatching":true,"AutoRollback":true}'
    fi
  done < "$before"
  echo "::warning::$stack rolled back to the launch templates it ran before this deploy; revert the commit, " \
       "or the next \`pulumi up\` rolls the same change out again"
}

cmd=${1:-}; shift || true
case "$cmd" in
  record|settle|image|run|rollback) "$cmd" "$@" ;;
  *) sed -n '2,16p' "$0" >&2; exit 2 ;;
esac
