"""Pulumi ComponentResources. They receive a validated StackConfig and DeploymentPlans and do
no sizing arithmetic of their own."""
