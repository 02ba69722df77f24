"""Run by .ci/run with a fresh venv's interpreter, from outside the clone, after `pip install --no-deps .`:
the installed package (not the work tree) holds every layer and the data files the product reads at run time."""
import os
import sys
from pathlib import Path

import llm_platform

here = os.path.dirname(llm_platform.__file__)
assert "site-packages" in here, f"llm_platform imported from {here}, not from the installed wheel"
# by path: importing the subpackages would need the runtime dependencies, which this venv does not have
data = {
    "catalog": ["gpu_instances.yaml", "gpus.yaml", "images.yaml", "models.yaml", "overheads.yaml",
                             "performance.yaml", "quantization.yaml"],
    "policies": ["PulumiPolicy.yaml", "requirements.txt", "config/prod.json"],
}
for package, files in data.items():
    missing = [f for f in files if not (Path(here) / package / f).is_file()]
    assert not missing, f"{package} is missing {missing} in the installed package"
for layer in ("catalog", "settings", "sizing", "serving", "offline", "program", "components", "policies"):
    assert (Path(here) / layer / "__init__.py").is_file(), f"llm_platform.{layer} is not in the installed package"
print(f"installed package OK: {here} ({sys.version.split()[0]})")
