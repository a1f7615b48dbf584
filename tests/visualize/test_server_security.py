"""The live map's server answers its user only (issue 30): a real server on 127.0.0.1, asked as a
hostile page would ask it (another site's name resolving to 127.0.0.1, another port, a foreign Origin,
no token, a wrong one) and as the map's own page does (the printed address, the cookie, the page's
requests, labelling, the notebook's frame)."""

from __future__ import annotations

import http.client
import json
import re
import urllib.parse

import numpy as np
import pytest

from tests.visualize.conftest import write_map_run

GET_ROUTES = ["/", "/view?x0=-9&x1=9&y0=-9&y1=9", "/density.png?x0=-9&x1=9&y0=-9&y1=9", "/thumb?id=p1"]
GET_ROUTES += ["/neighbours?id=p1", "/find?id=p1"]
LABEL = {"object_id": ["p1", "p2"], "label": 1, "tag": "ring"}
POSTS = {"/selection": {"object_id": ["p1"]}, "/label": LABEL, "/rank": {}}


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """A map of 60 objects served on 127.0.0.1 (any free port); labels go to its results directory."""
    from hyrax.config import ConfigManager
    from hyrax.visualize.live import LiveMap

    where = tmp_path_factory.mktemp("served")
    manager = ConfigManager()
    manager.set_config("general.results_dir", str(where / "results"))
    run = write_map_run(where / "map", np.random.default_rng(0).normal(size=(60, 2)))
    live = LiveMap(manager.config, run, max_points=20)  # sampled: the page gets a density image too
    live.start(0)
    yield live
    live.stop()


def ask(live, method: str, path: str, headers: dict | None = None, body: dict | None = None, host=None):
    """One request, its Host header as given (default: the server's own); (status, headers, body)."""
    port = live.server.server_address[1]
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    connection.putrequest(method, path, skip_host=True)
    connection.putheader("Host", host if host is not None else f"127.0.0.1:{port}")
    data = json.dumps(body).encode() if body is not None else b""
    headers = dict(headers or {})
    if method == "POST":
        headers = {"Content-Type": "application/json", "Content-Length": str(len(data)), **headers}
    for name, value in headers.items():
        connection.putheader(name, value)
    connection.endheaders()
    if data:
        connection.send(data)
    response = connection.getresponse()
    answer = response.status, response.headers, response.read()
    connection.close()
    return answer


def with_token(path: str, token: str) -> str:
    return path + ("&" if "?" in path else "?") + urllib.parse.urlencode({"token": token})


def labelled(live) -> int:
    return len(live.source.labels().latest())


@pytest.mark.parametrize("route", GET_ROUTES + list(POSTS))
@pytest.mark.parametrize("host", ["evil.example:{port}", "127.0.0.1:{other}", "localhost", ""])
def test_a_request_naming_another_host_is_refused(served, route, host):
    """Another site's name, or the loopback address with another port: refused even with the token."""
    port = served.server.server_address[1]
    host = host.format(port=port, other=port + 1)
    method = "POST" if route in POSTS else "GET"
    status, _, body = ask(served, method, with_token(route, served.token), body=POSTS.get(route), host=host)
    assert status == 403 and b"loopback address with its port" in body
    assert f"127.0.0.1:{port}".encode() in body  # where it does answer


def test_a_dns_rebinding_page_can_neither_read_nor_label(served):
    """A page of attacker.example, whose name now resolves to 127.0.0.1, asks as its own origin: the
    browser sends Host attacker.example (and no Origin on a GET, its own on a POST)."""
    port = served.server.server_address[1]
    host = f"attacker.example:{port}"
    before = labelled(served)
    for route in GET_ROUTES:
        assert ask(served, "GET", route, host=host)[0] == 403, route
    for origin in ({}, {"Origin": f"http://{host}"}):
        assert ask(served, "POST", "/label", origin, LABEL, host=host)[0] == 403
    assert labelled(served) == before


@pytest.mark.parametrize("origin", ["http://evil.example", "null", "http://localhost:1"])
def test_a_foreign_origin_is_refused_on_get_and_post(served, origin):
    """A page of another site (or a sandboxed one: Origin null) is refused, token or not."""
    before = labelled(served)
    status, _, body = ask(served, "GET", with_token(GET_ROUTES[1], served.token), {"Origin": origin})
    assert status == 403 and b"map page only" in body
    status, _, body = ask(served, "POST", with_token("/label", served.token), {"Origin": origin}, LABEL)
    assert status == 403 and b"map page only" in body
    assert labelled(served) == before


@pytest.mark.parametrize("route", GET_ROUTES + list(POSTS))
@pytest.mark.parametrize("token", [None, "", "wrong", "prefix"])
def test_a_request_without_the_session_token_is_refused(served, route, token):
    token = served.token[:-1] if token == "prefix" else token
    path = route if token is None else with_token(route, token)
    headers = {"Cookie": f"hyrax_map_1={served.token}"}  # another server's cookie is no token here
    if token is not None:
        headers["X-Hyrax-Token"] = token
    before = labelled(served)
    method = "POST" if route in POSTS else "GET"
    status, kind, body = ask(served, method, path, headers, POSTS.get(route))
    assert status == 403 and b"needs its session token" in body and b"?token=" in body
    assert kind["Content-Type"].startswith("text/plain" if route == "/" else "application/json")
    assert labelled(served) == before


def test_the_printed_address_opens_the_page_and_sets_the_token_cookie(served):
    port = served.server.server_address[1]
    assert served.url == f"http://127.0.0.1:{port}/?token={served.token}"
    assert len(served.token) >= 43  # secrets.token_urlsafe(32)
    printed = served.url[served.url.index("/?") :]  # the page's path and query, as printed
    status, headers, page = ask(served, "GET", printed)
    assert status == 200 and b"Bokeh" in page
    cookie = headers["Set-Cookie"]
    assert cookie.startswith(f"hyrax_map_{port}={served.token};")
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
    assert headers["Referrer-Policy"] == "no-referrer"  # addresses carry the token
    # the image addresses in the page carry the token: they also load in a notebook's frame
    tokens = re.findall(rb"(?:thumb|density\.png)\?[^\"]*?&amp;token=([\w-]+)", page)
    assert len(tokens) == 21 and {t.decode() for t in tokens} == {served.token}  # 20 points, 1 density
    for name in ("localhost", "[::1]"):  # every loopback name, with the server's port
        assert ask(served, "GET", printed, host=f"{name}:{port}")[0] == 200


def test_the_cookie_or_the_header_carries_the_token_for_the_pages_requests(served):
    port = served.server.server_address[1]
    cookie = {"Cookie": f"other=1; hyrax_map_{port}={served.token}; _xsrf=2|a=b"}
    status, _, body = ask(served, "GET", GET_ROUTES[1], cookie)
    view = json.loads(body)
    assert status == 200 and view["drawn"] == 20 and view["in_view"] == 60
    density = view["density"]["url"][0]  # the density image's address, as the page gets it
    status, kind, png = ask(served, "GET", "/" + density)
    assert status == 200 and kind["Content-Type"] == "image/png" and png.startswith(b"\x89PNG")
    status, kind, png = ask(served, "GET", "/thumb?id=p3", {"X-Hyrax-Token": served.token})
    assert status == 200 and png.startswith(b"\x89PNG") and "private" in kind["Cache-Control"]
    own = {**cookie, "Origin": f"http://127.0.0.1:{port}"}
    status, _, body = ask(served, "POST", "/selection", own, {"object_id": ["p4", "p5"]})
    assert status == 200 and json.loads(body)["selected"] == 2


def test_the_pages_labelling_works_with_its_token(served):
    """The page labels through POST /label with the token from its address and its own Origin."""
    port = served.server.server_address[1]
    own = {"Origin": f"http://127.0.0.1:{port}"}
    status, _, body = ask(served, "POST", with_token("/label", served.token), own, LABEL)
    assert status == 200 and json.loads(body)["labelled"] == 2
    latest = served.source.labels().latest().set_index("object_id")
    assert latest.loc[["p1", "p2"], "label"].tolist() == [1, 1]
    assert latest.loc[["p1", "p2"], "tag"].tolist() == ["ring", "ring"]


def test_each_map_has_its_own_token(tmp_path):
    """As published: h.visualize() in a notebook shows the live map in a frame; its address carries this
    map's token (not another's), and the frame's page answers."""
    import html

    from hyrax import Hyrax

    h = Hyrax(setup_logging=False)
    h.set_config("general.results_dir", str(tmp_path / "results"))
    run = write_map_run(tmp_path / "map", np.random.default_rng(1).normal(size=(30, 2)))
    first, second = h.visualize(input_dir=str(run)), h.visualize(input_dir=str(run))
    try:
        frame = first._repr_html_()
        src = html.unescape(re.search(r'<iframe src="([^"]+)"', frame).group(1))
        assert src == first.live.url and f"?token={first.live.token}" in src
        assert first.live.token != second.live.token
        second.serve(0)
        path = src[src.index("/?") :]
        assert ask(first.live, "GET", path)[0] == 200
        assert ask(second.live, "GET", path)[0] == 403  # the other map's token opens nothing here
    finally:
        first.live.stop()
        second.live.stop()


@pytest.mark.slow  # ~12 s on the shared machine: Chromium and two servers
def test_the_map_works_in_a_notebooks_frame_on_another_site(tmp_path):
    """h.visualize() in Jupyter: the notebook (here a page of http://localhost:PORT, as Jupyter serves it)
    frames the map at 127.0.0.1, another site, where the browser withholds the SameSite=Strict cookie:
    the frame's requests carry the token from its address. Its thumbnails load and its selection
    reaches Python."""
    import http.server
    import threading

    from hyrax import Hyrax
    from tests.visualize.test_browser import ARGS, CHROMIUM, _loaded_images

    if CHROMIUM is None:
        pytest.fail(
            "Chromium is not installed (apt-get install chromium); see tests/visualize/test_browser.py"
        )
    from playwright.sync_api import sync_playwright

    h = Hyrax(setup_logging=False)
    h.set_config("general.results_dir", str(tmp_path / "results"))
    view = h.visualize(
        input_dir=str(write_map_run(tmp_path / "map", np.random.default_rng(2).normal(size=(40, 2))))
    )
    (tmp_path / "notebook.html").write_text(f"<html><body>{view._repr_html_()}</body></html>")
    notebook = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0),
        lambda *a: http.server.SimpleHTTPRequestHandler(*a, directory=str(tmp_path)),
    )
    threading.Thread(target=notebook.serve_forever, daemon=True).start()
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
            page = browser.new_page()
            page.goto(f"http://localhost:{notebook.server_address[1]}/notebook.html")
            frame = page.frame_locator("iframe")
            frame.locator("canvas").first.wait_for(timeout=30_000)
            inner = page.frames[1]
            inner.wait_for_function(
                "() => window.Bokeh && Bokeh.documents.length && "
                "[...Bokeh.documents[0].all_models].some(m => m.name === 'points')",
                timeout=30_000,
            )
            inner.evaluate(
                "() => { [...Bokeh.documents[0].all_models].find(m => m.name === 'points')"
                ".selected.indices = [0, 1, 2]; }"
            )
            inner.wait_for_selector("img.hyrax-thumb", timeout=10_000)
            assert _loaded_images(inner, "img.hyrax-thumb") == 3
            inner.wait_for_function("() => window._hyrax_selection_sent !== undefined", timeout=10_000)
            inner.evaluate("() => window._hyrax_selection_sent")
            assert len(view.selected()) == 3
            browser.close()
    finally:
        notebook.shutdown()
        notebook.server_close()
        view.live.stop()
