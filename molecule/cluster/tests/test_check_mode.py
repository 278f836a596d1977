"""A check run (`ansible-playbook --check`) on an app server and a
front-end not yet provisioned goes through, tells what a real run would
change and changes nothing on them."""

import copy

from lightweb_testlib import exported_inventory, file_tree, new_host_like, recap_changed, \
    run_playbook_with_inventory

NEW_APPSERVER = "lightweb-check-app"
NEW_FRONTEND = "lightweb-check-fe"

# Run once, not once per inventory host: the test picks its hosts.
testinfra_hosts = ["ansible://lightweb-fe1"]


def test_a_check_run_on_new_farm_hosts_tells_what_it_would_do_and_changes_nothing(tmp_path):
    inventory = exported_inventory()
    groups = inventory["all"]["children"]
    appservers, frontends = groups["appservers"]["hosts"], groups["frontends"]["hosts"]
    appservers[NEW_APPSERVER] = dict(copy.deepcopy(appservers["lightweb-app1"]), lightweb_address="10.89.42.41")
    frontends[NEW_FRONTEND] = dict(copy.deepcopy(frontends["lightweb-fe1"]), lightweb_address="10.89.42.42")
    with new_host_like(NEW_APPSERVER, "lightweb-app1"), new_host_like(NEW_FRONTEND, "lightweb-fe1"):
        before = {name: file_tree(name) for name in (NEW_APPSERVER, NEW_FRONTEND)}
        result = run_playbook_with_inventory(inventory, "%s,%s" % (NEW_APPSERVER, NEW_FRONTEND),
                                             "playbooks/site.yml", tmp_path, "--check")
        assert recap_changed(result, NEW_APPSERVER) > 10
        assert recap_changed(result, NEW_FRONTEND) > 10
        for name in ("Install the packages the app needs", "Deploy the systemd units", "Install lighttpd packages"):
            assert name in result.stdout
        after = {name: file_tree(name) for name in (NEW_APPSERVER, NEW_FRONTEND)}
    for name, lines in after.items():
        assert lines == before[name], (name, [line for line in lines if line not in before[name]][:20])
