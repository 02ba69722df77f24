"""The recording mocks harness: run a Pulumi Python program in-process with no cloud and no CLI."""
