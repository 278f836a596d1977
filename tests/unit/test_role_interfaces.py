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


def _tags_of(tasks, name):
    return set(next(task for task in tasks if task["name"] == name)["tags"])


def test_a_run_tagged_to_switch_releases_also_checks_the_switched_app():
    # activate.yml switches; health.yml checks and goes back on failure. A
    # --tags run that selects the one must select the other.
    converge = load("webpy_app", "tasks/converge.yml")
    switch = _tags_of(converge, "Switch to the release once it answers")
    assert switch <= _tags_of(converge, "Check the app on its new release")
    health = load("webpy_app", "tasks/health.yml")
    include = next(task for task in health if "ansible.builtin.include_tasks" in task)
    assert switch <= set(include["ansible.builtin.include_tasks"]["apply"]["tags"])
    # The single-host play checks in a post task.
    listed = subprocess.run(
        ["ansible-playbook", "-i", str(ROOT / "inventories/example/hosts.yml"), str(ROOT / "site.yml"),
         "--list-tasks", "--tags", ",".join(sorted(switch - {"webpy_app"}))],
        capture_output=True, text=True, check=False, cwd=ROOT)
    assert listed.returncode == 0, listed.stderr
    assert "Check the app on its new release (back to the one before if it fails)" in listed.stdout, listed.stdout


@pytest.mark.parametrize("role", ROLES)
def test_the_settings_check_knows_every_boolean_setting(role):
    # validate.yml names a true-or-false setting given as text; the list it
    # checks is written out (no file read on every run), so it must follow
    # the spec.
    options = load(role, "meta/argument_specs.yml")["argument_specs"]["main"]["options"]
    check = load(role, "tasks/validate.yml")[0]
    listed = check["vars"]["__%s_booleans" % role]
    assert sorted(listed) == sorted(name for name, option in options.items() if option.get("type") == "bool")
