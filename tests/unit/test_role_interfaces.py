"""Each role documents every input once: defaults, argument spec and README agree."""

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
ROLES = sorted(p.parents[1].name for p in ROOT.glob("roles/*/meta/argument_specs.yml"))


def load(role, relative):
    return yaml.safe_load((ROOT / "roles" / role / relative).read_text())


@pytest.mark.parametrize("role", ROLES)
def test_every_default_is_specified_and_prefixed(role):
    defaults = load(role, "defaults/main.yml")
    options = load(role, "meta/argument_specs.yml")["argument_specs"]["main"]["options"]
    assert set(defaults) == set(options)
    assert all(name.startswith(role + "_") for name in options)


@pytest.mark.parametrize("role", ROLES)
def test_spec_defaults_match_role_defaults(role):
    defaults = load(role, "defaults/main.yml")
    options = load(role, "meta/argument_specs.yml")["argument_specs"]["main"]["options"]
    for name, option in options.items():
        if "{{" in str(defaults[name]):
            assert "default" not in option, "%s: templated defaults are described, not repeated" % name
        else:
            assert option.get("default") == defaults[name], name


def test_role_readmes_are_generated_from_the_specs():
    result = subprocess.run([sys.executable, str(ROOT / "scripts" / "role_docs.py"), "--check"],
                            capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout
