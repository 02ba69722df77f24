"""Entry point of the llm-platform component provider: Pulumi runs this directory as the plugin."""
from llm_platform.provider import main

if __name__ == "__main__":
    main()
