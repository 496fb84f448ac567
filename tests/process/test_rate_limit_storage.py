"""Two `hub serve` processes on one PostgreSQL database share one rate-limit count (rate_limit_storage = "database").

Each process is its own Python interpreter with its own memory, as two gunicorn workers or two
hosts are; the sign-ins alternate between them, so a count kept per process would let twice
the limit through.
"""
from __future__ import annotations

import re
import signal
import subprocess

import pytest
import requests

from tests.process.test_commands import HUB, _free_port, _fresh, _wait_until

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

LIMIT = 2  # 2 x LIMIT sign-ins stay below the accounts service's own waits (after 5 wrong passwords from an address)


def _serve(instance, port: int, name: str) -> subprocess.Popen:
    log = (instance.folder / f"{name}.log").open("w")  # a pipe nobody reads would fill and stop the server
    process = subprocess.Popen([HUB, "--config", str(instance.config), "serve", "--port", str(port)],
                               cwd=instance.folder, env=instance.env, stdout=log, stderr=subprocess.STDOUT)
    log.close()
    return process


def _stop(process: subprocess.Popen) -> None:
    process.send_signal(signal.SIGINT)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@pytest.fixture
def two_servers(tmp_path, request):
    instance, drop = _fresh("postgresql", tmp_path / "hub", security__rate_limit_storage=request.param,
                            security__login_rate_limit=f"{LIMIT} per minute")
    instance.run("init", "--demo")
    ports = [_free_port(), _free_port()]
    processes = [_serve(instance, port, f"serve{n}") for n, port in enumerate(ports)]
    urls = [f"http://127.0.0.1:{port}" for port in ports]
    try:
        for url, process, n in zip(urls, processes, range(2)):
            def up(url=url, process=process, n=n):
                try:
                    return requests.get(f"{url}/healthz", timeout=10).status_code == 200
                except requests.RequestException:
                    return process.poll() is not None and pytest.fail((instance.folder / f"serve{n}.log").read_text())
            _wait_until(up, f"hub serve {n} to answer")
        yield instance, urls
    finally:
        for process in processes:
            _stop(process)
        drop()


def _wrong_sign_in(url: str, username: str) -> requests.Response:
    browser = requests.Session()
    browser.cookies.set("refhub_lang", "en")
    page = browser.get(f"{url}/login", timeout=30)
    token = re.search(r'name="csrf_token" (?:type="hidden" )?value="([^"]+)"', page.text).group(1)
    return browser.post(f"{url}/login", data={"username": username, "password": "a wrong guess 0000",
                                              "csrf_token": token}, allow_redirects=False, timeout=30)


@pytest.mark.parametrize("two_servers", ["database"], indirect=True)
def test_sign_ins_past_the_limit_are_refused_across_both_processes(two_servers):
    instance, urls = two_servers
    # One address (127.0.0.1), a new made-up user name each time, alternating between the two processes.
    answers = [_wrong_sign_in(urls[n % 2], f"nobody{n}.here") for n in range(2 * LIMIT)]
    assert [a.status_code for a in answers] == [401] * LIMIT + [429] * LIMIT, [a.status_code for a in answers]
    assert all("Too many requests" in a.text and int(a.headers["Retry-After"]) > 0 for a in answers[LIMIT:])
    # The count is in the database, under digests: no address and no user name in the clear.
    assert instance.scalar("SELECT max(hits) FROM rate_limit_window") == 2 * LIMIT
    assert instance.scalar("SELECT count(*) FROM rate_limit_window WHERE position('nobody' in "
                           "encode(key_digest, 'escape')) > 0") == 0


@pytest.mark.parametrize("two_servers", ["memory://"], indirect=True)
def test_with_counts_in_memory_each_process_counts_on_its_own(two_servers):
    """The default, for contrast: the same sign-ins all pass, each process having seen only half of them."""
    _instance, urls = two_servers
    answers = [_wrong_sign_in(urls[n % 2], f"nobody{n}.here").status_code for n in range(2 * LIMIT)]
    assert answers == [401] * (2 * LIMIT), answers

