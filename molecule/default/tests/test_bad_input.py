"""Every bad input fails before anything on the host changes, naming its variable."""

import concurrent.futures
import json
import shutil
import tempfile
from pathlib import Path

import pytest

from lightweb_testlib import EXAMPLE_APP, node, run_playbook, self_signed_pair

# One host is enough: the checks run on the controller's view of the inputs.
testinfra_hosts = ["ansible://lightweb-single-debian12"]

FOREIGN_CERT = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----"
HOST = "lightweb-single-debian12"
CERT = self_signed_pair("lightweb-single-debian12")[0]
OTHER_KEY = self_signed_pair("other")[1]
SNAPSHOT = (
    "find /etc/lighttpd /etc/systemd/system /etc/tmpfiles.d /etc/logrotate.d /srv /var/lib/lightweb"
    " -printf '%p %s %T@ %m %u\\n' | sort | sha256sum; systemctl show -p MainPID --value lighttpd"
)
# Copies of the example app whose requirements pip on the host could not
# install: naming a file that is missing, or one outside the app (never
# deployed); giving a requirement as a path relative to where pip runs.
BAD_SOURCES = Path(tempfile.gettempdir()) / "lightweb-bad-requirements"
BAD_REQUIREMENTS = {"missing": "-r base.txt", "outside": "-c ../constraints.txt",
                    "relative": "./vendor/mylib", "editable": "-e ."}

BAD_INPUTS = [
    # As `-e lighttpd_status_enabled=true` gives them: text, not true or false.
    ({"lighttpd_status_enabled": "true"}, "lighttpd_status_enabled"),
    ({"webpy_app_debug": "false"}, "webpy_app_debug"),
    ({"lighttpd_port": "eighty"}, "lighttpd_port"),
    ({"lighttpd_port": 70000}, "lighttpd_port"),
    ({"lighttpd_static_prefix": "sta/"}, "lighttpd_static_prefix"),
    ({"lighttpd_static_prefix": "/sta/"}, "lighttpd_static_prefix"),
    ({"lighttpd_fastcgi_prefix": "/sta"}, "lighttpd_fastcgi_prefix"),
    ({"lighttpd_static_max_age": -1}, "lighttpd_static_max_age"),
    ({"lighttpd_document_root": "srv/htdocs"}, "lighttpd_document_root"),
    ({"lighttpd_error_log": "/var/log/lighttpd/my errors.log"}, "lighttpd_error_log"),
    ({"lighttpd_fastcgi_socket_dir": "/run/" + "x" * 100}, "lighttpd_fastcgi_socket_dir"),
    ({"lighttpd_fastcgi_socket_name": "sub/app.sock"}, "lighttpd_fastcgi_socket_name"),
    ({"lighttpd_fastcgi_max_procs": 0}, "lighttpd_fastcgi_max_procs"),
    ({"lighttpd_fastcgi_bin_path": "python3 app.py"}, "lighttpd_fastcgi_bin_path"),
    ({"lighttpd_fastcgi_mode": "cgi"}, "lighttpd_fastcgi_mode"),
    ({"lighttpd_fastcgi_mode": "remote", "lighttpd_fastcgi_backends": []}, "lighttpd_fastcgi_backends"),
    ({"lighttpd_fastcgi_mode": "remote",
      "lighttpd_fastcgi_backends": [{"name": "app1", "host": "app1.example.com", "port": 9000}]},
     "lighttpd_fastcgi_backends"),
    ({"lighttpd_tls_enabled": True}, "lighttpd_tls_enabled"),
    ({"lighttpd_tls_enabled": True, "lighttpd_tls_certificate": FOREIGN_CERT}, "lighttpd_tls_certificate"),
    ({"lighttpd_tls_enabled": True, "lighttpd_tls_self_signed": True, "lighttpd_tls_port": 80}, "lighttpd_tls_port"),
    ({"lighttpd_tls_enabled": True, "lighttpd_tls_certificate_file": "/etc/ssl/none/cert.pem",
      "lighttpd_tls_private_key_file": "/etc/ssl/none/key.pem"}, "lighttpd_tls_certificate_file"),
    # A key every account may read (a file that is 0644 on every host): refused, and left as it is.
    ({"lighttpd_tls_enabled": True, "lighttpd_tls_certificate_file": "/etc/ssl/certs/ca-certificates.crt",
      "lighttpd_tls_private_key_file": "/etc/ssl/certs/ca-certificates.crt"}, "lighttpd_tls_private_key_file"),
    ({"lighttpd_listen_address": "0.0.0.0:80"}, "lighttpd_listen_address"),
    ({"lighttpd_listen_backlog": 0}, "lighttpd_listen_backlog"),
    ({"lighttpd_status_allowed": ["monitoring.example.com"]}, "lighttpd_status_allowed"),
    ({"lighttpd_max_request_size_kb": 0}, "lighttpd_max_request_size_kb"),
    ({"lighttpd_security_headers": {"Bad Header": "x"}}, "lighttpd_security_headers"),
    ({"webpy_app_wsgi_entry": "app"}, "webpy_app_wsgi_entry"),
    ({"webpy_app_pip_mode": "conda"}, "webpy_app_pip_mode"),
    ({"webpy_app_user": "root"}, "webpy_app_user"),
    ({"webpy_app_base_dir": "/srv/my app"}, "webpy_app_base_dir"),
    ({"webpy_app_source_dir": "/nonexistent/app"}, "webpy_app_source_dir"),
    ({"webpy_app_pip_mode": "index", "webpy_app_pip_index_url": "ftp://mirror.example.com/simple"},
     "webpy_app_pip_index_url"),
    ({"webpy_app_max_threads": "many"}, "webpy_app_max_threads"),
    ({"webpy_app_nice": -5}, "webpy_app_nice"),
    ({"webpy_app_cpu_policy": "fifo"}, "webpy_app_cpu_policy"),
    ({"webpy_app_server": "gunicorn"}, "webpy_app_server"),
    ({"lighttpd_fastcgi_kill_signal": 9}, "lighttpd_fastcgi_kill_signal"),
    ({"webpy_app_process_manager": "systemd", "webpy_app_allowed_clients": ["fe1.example.com"]},
     "webpy_app_allowed_clients"),
    ({"webpy_app_process_manager": "systemd", "webpy_app_listen_port": 0}, "webpy_app_listen_port"),
    ({"webpy_app_release": "../v2"}, "webpy_app_release"),
    ({"webpy_app_keep_releases": 0}, "webpy_app_keep_releases"),
    ({"webpy_app_logrotate_keep": 0}, "webpy_app_logrotate_keep"),
    ({"webpy_app_health_path": "health"}, "webpy_app_health_path"),
    ({"webpy_app_health_timeout": 0}, "webpy_app_health_timeout"),
    ({"webpy_app_health_address": "localhost:9000"}, "webpy_app_health_address"),
    # Paths the roles would give to a service account, or publish.
    ({"lighttpd_error_log": "/var/log/error.log"}, "lighttpd_error_log"),
    ({"lighttpd_access_log": "/var/log/lighttpd/../access.log"}, "lighttpd_access_log"),
    ({"lighttpd_fastcgi_socket_dir": "/run"}, "lighttpd_fastcgi_socket_dir"),
    ({"webpy_app_log_dir": "/var/log"}, "webpy_app_log_dir"),
    ({"webpy_app_state_dirs": ["/srv/webpy"]}, "webpy_app_state_dirs"),
    ({"webpy_app_state_dirs": ["/srv/webpy/releases/cache"]}, "webpy_app_state_dirs"),
    ({"webpy_app_static_subdir": ""}, "webpy_app_static_subdir"),
    ({"webpy_app_static_subdir": ".."}, "webpy_app_static_subdir"),
    ({"lighttpd_graceful_shutdown_timeout": 0}, "lighttpd_graceful_shutdown_timeout"),
    ({"lighttpd_extra_packages": ["curl=7.88.1-10"]}, "lighttpd_extra_packages"),
    ({"lighttpd_tls_enabled": True, "lighttpd_tls_self_signed": True, "lighttpd_port": 8080}, "lighttpd_tls_redirect_http"),
    ({"webpy_app_base_dir": "/srv"}, "webpy_app_base_dir"),
    ({"webpy_app_static_dest": "/var/www"}, "webpy_app_static_dest"),
    ({"webpy_app_process_manager": "systemd", "webpy_app_listen_port": 22}, "webpy_app_listen_port"),
    ({"webpy_app_environment": {"DB URL": "x"}}, "webpy_app_environment"),
    ({"webpy_app_environment": {"GREETING": "a\nExecStartPre=/bin/false"}}, "webpy_app_environment"),
    # Paths lighttpd's sandbox hides or keeps read-only pass lighttpd's own check.
    ({"lighttpd_fastcgi_socket_dir": "/tmp/lightweb-fcgi"}, "lighttpd_fastcgi_socket_dir"),
    ({"lighttpd_document_root": "/home/www"}, "lighttpd_document_root"),
    ({"lighttpd_error_log": "/etc/lighttpd/logs/error.log"}, "lighttpd_error_log"),
    # The same for the app's service, whose children's try-outs run outside it.
    ({"webpy_app_base_dir": "/home/deploy/shop"}, "webpy_app_base_dir"),
    ({"webpy_app_log_dir": "/tmp/shop-logs"}, "webpy_app_log_dir"),
    ({"webpy_app_state_dirs": ["/home/shop/uploads"]}, "webpy_app_state_dirs"),
    ({"webpy_app_state_dirs": ["/etc/shop"]}, "webpy_app_state_dirs"),
    # Where acme.sh keeps what it issues: the server started on it could not open it.
    ({"lighttpd_tls_enabled": True, "lighttpd_tls_certificate_file": "/root/.acme.sh/example.com/fullchain.cer",
      "lighttpd_tls_private_key_file": "/root/.acme.sh/example.com/example.com.key"}, "lighttpd_tls_certificate_file"),
    # Addresses that look right and would fail only at nft's or lighttpd's own check.
    ({"webpy_app_process_manager": "systemd", "webpy_app_allowed_clients": ["10.0.0.0/33"]},
     "webpy_app_allowed_clients"),
    ({"webpy_app_process_manager": "systemd", "webpy_app_listen_address": "10.0.0.256"}, "webpy_app_listen_address"),
    ({"lighttpd_status_allowed": ["10.0.0.300"]}, "lighttpd_status_allowed"),
    ({"lighttpd_status_allowed": ["fd00:1:2/48"]}, "lighttpd_status_allowed"),  # 3 groups, no "::"
    # lighttpd hands the app every URL starting with its prefix.
    ({"lighttpd_fastcgi_prefix": "/s"}, "lighttpd_fastcgi_prefix"),
    ({"lighttpd_static_prefix": "/apps"}, "lighttpd_fastcgi_prefix"),
    ({"lighttpd_group": "root"}, "lighttpd_group"),
    ({"lighttpd_extra_packages": ["curl:amd64"]}, "lighttpd_extra_packages"),
    # An account that is not a service account is never taken over.
    ({"webpy_app_user": "www-data", "lighttpd_user": "www-data"}, "webpy_app_user"),
    ({"webpy_app_source_dir": str(BAD_SOURCES / "missing")}, "webpy_app_requirements_file"),
    ({"webpy_app_source_dir": str(BAD_SOURCES / "outside")}, "webpy_app_requirements_file"),
    ({"webpy_app_source_dir": str(BAD_SOURCES / "relative")}, "webpy_app_requirements_file"),
    ({"webpy_app_source_dir": str(BAD_SOURCES / "editable")}, "webpy_app_requirements_file"),
    # Well-formed, but not a pair: lighttpd would accept it until its next start.
    ({"lighttpd_tls_enabled": True, "lighttpd_tls_certificate": CERT, "lighttpd_tls_private_key": OTHER_KEY},
     "lighttpd_tls_private_key"),
]


@pytest.fixture(name="outcomes", scope="module")
def fixture_outcomes():
    """Every bad input's run, a few at a time (each fails before it changes
    anything), and the host's state before and after them all."""
    host = node(HOST)
    before = host.check_output(SNAPSHOT)
    shutil.rmtree(BAD_SOURCES, ignore_errors=True)
    for name, line in BAD_REQUIREMENTS.items():
        shutil.copytree(EXAMPLE_APP, BAD_SOURCES / name, ignore=shutil.ignore_patterns("__pycache__"))
        with open(BAD_SOURCES / name / "requirements.txt", "a", encoding="utf-8") as requirements:
            requirements.write(line + "\n")
    (BAD_SOURCES / "constraints.txt").write_text("flup==1.0.3\n")
    # The path exists in the app: still not something pip on the host finds.
    (BAD_SOURCES / "relative" / "vendor" / "mylib").mkdir(parents=True)
    (BAD_SOURCES / "relative" / "vendor" / "mylib" / "pyproject.toml").write_text('[project]\nname = "mylib"\n')
    with concurrent.futures.ThreadPoolExecutor(max_workers=4) as pool:
        runs = [pool.submit(run_playbook, HOST, "-e", json.dumps(extra_vars)) for extra_vars, _variable in BAD_INPUTS]
        results = [run.result() for run in runs]
    shutil.rmtree(BAD_SOURCES)
    return {"before": before, "after": host.check_output(SNAPSHOT), "results": results}


@pytest.mark.parametrize("case", range(len(BAD_INPUTS)), ids=[v for _e, v in BAD_INPUTS])
def test_bad_input_fails_naming_the_variable_before_any_change(outcomes, case):
    variable = BAD_INPUTS[case][1]
    result = outcomes["results"][case]
    output = result.stdout + result.stderr
    assert result.returncode != 0
    # In the failure's own message: not only in the source lines Ansible
    # quotes after an error, nor in the argument spec it prints.
    assert any(variable in message for message in failure_messages(output)), output[-3000:]
    # The first failure is a check, not a task that changed something.
    assert "changed=0" in output, output[-3000:]


@pytest.mark.parametrize("source, named", [("relative", '"./vendor/mylib" in requirements.txt'),
                                           ("editable", '"." in requirements.txt')])
def test_requirements_given_as_relative_paths_are_named(outcomes, source, named):
    case = BAD_INPUTS.index(({"webpy_app_source_dir": str(BAD_SOURCES / source)}, "webpy_app_requirements_file"))
    result = outcomes["results"][case]
    messages = failure_messages(result.stdout + result.stderr)
    assert any("relative paths" in message and "found: %s (got" % named in message for message in messages), messages


def failure_messages(output):
    """The `msg` of each failed task, or loop item, in ansible-playbook's output."""
    messages = []
    for line in output.splitlines():
        if line.startswith(("fatal: [", "failed: [")) and " => " in line:
            messages.append(str(json.loads(line.split(" => ", 1)[1]).get("msg", "")))
    return messages


def test_bad_inputs_left_the_host_as_it_was(outcomes):
    assert outcomes["after"] == outcomes["before"]
