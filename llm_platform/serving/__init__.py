"""Pure renderers (no Pulumi): runtime command lines, the nginx auth proxy, cloud-init user data,
telemetry config, subnet maths and the model verification script."""
