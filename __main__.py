"""The Pulumi program: `pulumi up` runs this per stack; plan.py and the tests run it under mocks."""
from llm_platform.program import main

main()
