"""The documentation site builds offline without a warning, is self-contained, and works in a
real browser.

The site is built once per session, as the README says, into ``docs/_build/html``
(``python -m sphinx -W -E -b html docs docs/_build/html`` after removing ``docs/_build/html``:
``-W`` turns every warning, a broken cross-reference or anchor of the Markdown included, into
a failure; from scratch, so that an earlier build can neither hide a warning of an unchanged
page nor leave a stale page). The executed notebooks are reused from ``docs/tutorials/`` while
their sources and the package are unchanged (``docs/conf.py``). Then:

* every page shows the version; every public module has its API page and every public
  function its entry; every notebook its page with figures;
* nothing is fetched from another host: no ``<script src>``, ``<link href>``, ``<img src>``
  or CSS ``url()`` with a scheme (``external_resources``);
* every relative link and image of every page resolves, anchors included (``broken_links``);
* headless Chromium (Debian's ``chromium`` and ``chromium-driver``, driven by Selenium with
  the driver's path: nothing is downloaded) opens the home page, the spec, a tutorial and an
  API page served on 127.0.0.1 and finds no console error, no image that did not load and no
  math left untypeset (``page_problems``); the search page finds ``nsad``. Screenshots go to
  ``docs/_build/screenshots/``.

Each checker is also shown to reject a wrong page (a missing image, a broken link or anchor,
an external script, raw ``$$`` math).

Locally the tests skip when Sphinx, myst-nb or Chromium is missing; in CI (``CI`` set) that
is a failure, as for torch in ``conftest.py``.
"""

from __future__ import annotations

import functools
import html
import html.parser
import http.server
import importlib.util
import json
import os
import pkgutil
import re
import shutil
import subprocess
import sys
import threading
import time
import urllib.parse
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
SITE = DOCS / "_build" / "html"
SCREENSHOTS = DOCS / "_build" / "screenshots"
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
BUILD_MODULES = ("sphinx", "myst_nb", "pydata_sphinx_theme", "mathjax", "nbclient", "ipykernel")


def _require(what: str, available: bool) -> None:
    if available:
        return
    if os.environ.get("CI"):
        pytest.fail(f"{what} is required in CI for the documentation site tests")
    pytest.skip(f"{what} not installed: documentation site tests skipped")


# -- checkers on built HTML -------------------------------------------------------------------
class _Tags(html.parser.HTMLParser):
    """The tags of one page with their attributes, and the ids (anchors) it defines."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict]] = []
        self.ids: set[str] = set()

    def handle_starttag(self, tag, attrs):
        attrs = {k: v or "" for k, v in attrs}
        self.tags.append((tag, attrs))
        for key in ("id", "name"):
            if attrs.get(key):
                self.ids.add(attrs[key])


@functools.cache
def _parse(path: Path) -> _Tags:
    parser = _Tags()
    parser.feed(path.read_text(encoding="utf-8", errors="replace"))
    return parser


def _pages(root: Path) -> list[Path]:
    """The site's pages (``_static`` holds the theme's templates, not pages)."""
    return sorted(p for p in root.rglob("*.html") if "_static" not in p.relative_to(root).parts)


EXTERNAL = re.compile(r"^(?:[A-Za-z][A-Za-z0-9+.-]*:|//)")
CSS_URL = re.compile(r"url\(\s*['\"]?([^'\")]+)")


def external_resources(root: Path) -> list[str]:
    """Every resource a page of the site under ``root`` would fetch from another host:
    ``<script src>``, ``<link href>`` (stylesheets, icons, preloads), ``<img src>``,
    ``<iframe src>``, and ``url()`` in the CSS files (``data:`` URLs are inline, hence allowed)."""
    found = []
    for page in _pages(root):
        for tag, attrs in _parse(page).tags:
            attr = {"script": "src", "img": "src", "iframe": "src", "link": "href", "source": "src"}.get(tag)
            value = attrs.get(attr or "", "")
            if attr and EXTERNAL.match(value) and not value.startswith("data:"):
                found.append(f"{page.relative_to(root)}: <{tag} {attr}={value}>")
    for css in sorted(root.rglob("*.css")):
        for value in CSS_URL.findall(css.read_text(encoding="utf-8", errors="replace")):
            if EXTERNAL.match(value) and not value.startswith("data:"):
                found.append(f"{css.relative_to(root)}: url({value})")
    return found


def broken_links(root: Path) -> list[str]:
    """Every relative ``href``/``src`` of every page under ``root`` whose file does not exist,
    and every ``#anchor`` (on the same page or another) that the target page does not define."""
    broken = []
    for page in _pages(root):
        for tag, attrs in _parse(page).tags:
            for attr in ("href", "src"):
                value = attrs.get(attr, "")
                if not value or EXTERNAL.match(value) or (tag == "link" and attrs.get("rel") == "canonical"):
                    continue
                url = urllib.parse.urlsplit(value)
                target = page if not url.path else (page.parent / urllib.parse.unquote(url.path)).resolve()
                if url.path.endswith("/") or target.is_dir():
                    target = target / "index.html"
                if not target.is_file() or root.resolve() not in target.resolve().parents:
                    broken.append(f"{page.relative_to(root)}: {attr}={value} (no file)")
                elif (
                    url.fragment
                    and target.suffix == ".html"
                    and urllib.parse.unquote(url.fragment) not in _parse(target).ids
                ):
                    broken.append(f"{page.relative_to(root)}: {attr}={value} (no anchor)")
    return broken


def test_checkers_reject_a_broken_site(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "ok.png").write_bytes(b"png")
    (tmp_path / "index.html").write_text(
        '<a href="sub/page.html#there">fine</a><a id="top" href="#top">fine</a><img src="ok.png">'
        '<a href="missing.html">gone</a><a href="sub/page.html#nowhere">bad anchor</a><img src="nope.png">'
        '<script src="https://cdn.example.org/x.js"></script><link rel="stylesheet" href="//cdn.example.org/a.css">'
    )
    (tmp_path / "sub" / "page.html").write_text('<h1 id="there">x</h1><a href="../index.html#top">up</a>')
    (tmp_path / "style.css").write_text(
        "@font-face { src: url('https://fonts.example.org/f.woff2'); }"
        " .a { background: url(data:image/png;base64,AAAA) }"
    )
    assert broken_links(tmp_path) == [
        "index.html: href=missing.html (no file)",
        "index.html: href=sub/page.html#nowhere (no anchor)",
        "index.html: src=nope.png (no file)",
    ]
    assert external_resources(tmp_path) == [
        "index.html: <script src=https://cdn.example.org/x.js>",
        "index.html: <link href=//cdn.example.org/a.css>",
        "style.css: url(https://fonts.example.org/f.woff2)",
    ]


def test_links_written_for_a_file_browser_are_mapped_to_the_site():
    _require("sphinx (docs extra)", importlib.util.find_spec("sphinx") is not None)
    spec = importlib.util.spec_from_file_location("docs_conf", DOCS / "conf.py")
    conf = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(conf)
    text = (
        "[a](../tutorials/01_lif_neuron.ipynb) [b](../README.md#documentation) [c](golden.md#make-one) "
        "![d](../figures/fig1_architecture.png) [e](https://example.org/x.md) [f](#local)"
    )
    assert conf.rewrite_links(text, "docs/spec.md", "spec.md") == (
        "[a](tutorials/01_lif_neuron.ipynb) [b](readme.md#documentation) [c](golden.md#make-one) "
        "![d](../figures/fig1_architecture.png) [e](https://example.org/x.md) [f](#local)"
    )
    # from a notebook (tutorials/ in the repository, tutorials/ in the site) and from the README
    assert conf.rewrite_links(
        "[s](../docs/spec.md#4-the-transformer) [n](02_tasa_figure2.ipynb) ![f](../figures/x.png)",
        "tutorials/01.ipynb",
        "tutorials/01.ipynb",
    ) == ("[s](../spec.md#4-the-transformer) [n](02_tasa_figure2.ipynb) ![f](../../figures/x.png)")
    assert conf.rewrite_links("[g](docs/golden.md) ![f](figures/x.png)", "README.md", "readme.md") == (
        "[g](golden.md) ![f](../figures/x.png)"
    )


# -- the build ----------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def site() -> Path:
    missing = [m for m in BUILD_MODULES if importlib.util.find_spec(m) is None]
    _require(f'the docs extra (pip install -e ".[docs]"; missing {missing})', not missing)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    if SITE.exists():  # from scratch: an incremental build keeps stale pages (viewcode's, for one)
        shutil.rmtree(SITE)
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "sphinx", "-W", "-E", "-q", "-b", "html", str(DOCS), str(SITE)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    seconds = time.perf_counter() - start
    assert proc.returncode == 0, f"the site did not build without warnings:\n{proc.stderr[-6000:]}"
    (DOCS / "_build" / "build_seconds.txt").write_text(f"{seconds:.0f}\n")
    _parse.cache_clear()
    return SITE


def test_site_has_every_page(site):
    import ds2ta_ref

    for name in [
        "index",
        "course",
        "spec",
        "golden",
        "torch",
        "benchmark",
        "ablation",
        "readme",
        "api/index",
        "search",
        "genindex",
    ]:
        assert (site / f"{name}.html").is_file(), name
    total_figures = 0
    for notebook in sorted((ROOT / "tutorials").glob("*.ipynb")):
        page = site / "tutorials" / f"{notebook.stem}.html"
        assert page.is_file(), notebook.name
        executed = json.loads((DOCS / "tutorials" / notebook.name).read_text(encoding="utf-8"))
        outputs = [o for c in executed["cells"] if c["cell_type"] == "code" for o in c["outputs"]]
        figures = sum("image/png" in o.get("data", {}) for o in outputs)
        images = [a for t, a in _parse(page).tags if t == "img" and "_images/" in a.get("src", "")]
        assert outputs and len(images) >= figures, f"{notebook.name}: {len(images)} of its {figures} figures shown"
        total_figures += figures
    assert total_figures >= 20, total_figures
    modules = [
        m.name
        for m in pkgutil.walk_packages(ds2ta_ref.__path__, "ds2ta_ref.")
        if not any(part.startswith("_") for part in m.name.split("."))
    ]
    assert "ds2ta_ref.lif" in modules and "ds2ta_ref.torch.model" in modules
    for name in ["ds2ta_ref"] + modules:
        page = site / "api" / f"{name}.html"
        assert page.is_file(), f"no API page for {name}"
        module = __import__(name, fromlist=["_"])
        ids = _parse(page).ids
        public = [
            n
            for n in getattr(module, "__all__", [])
            if getattr(getattr(module, n, None), "__module__", "") == name and callable(getattr(module, n))
        ]
        missing = [n for n in public if f"{name}.{n}" not in ids]
        assert not missing, f"{name}: public names without an API entry: {missing}"


def test_every_page_shows_the_version(site):
    import ds2ta_ref

    label = f"ds2ta_ref {ds2ta_ref.__version__}"
    pages = _pages(site)
    assert len(pages) > 30
    without = [str(p.relative_to(site)) for p in pages if label not in p.read_text(encoding="utf-8")]
    assert not without, f"pages without {label!r}: {without}"


def test_nothing_is_fetched_from_another_host(site):
    assert (site / "_static" / "mathjax" / "tex-mml-chtml.js").is_file()
    assert external_resources(site) == []


def test_every_internal_link_resolves(site):
    assert broken_links(site) == []


def test_the_home_page_gives_the_readme_commands(site):
    """The two commands of the home page are the README's first two (they cannot drift apart)."""
    readme = re.findall(r"```bash\n(.*?)```", (ROOT / "README.md").read_text(encoding="utf-8"), flags=re.S)
    home = re.findall(r"```bash\n(.*?)```", (DOCS / "index.md").read_text(encoding="utf-8"), flags=re.S)
    assert home[:2] == readme[:2]
    text = html.unescape(re.sub(r"<[^>]+>", "", (site / "index.html").read_text(encoding="utf-8")))
    assert all(cmd.strip() in text for cmd in readme[:2])


# -- the browser ------------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def browser(tmp_path_factory):
    _require("selenium (docs extra)", importlib.util.find_spec("selenium") is not None)
    _require(
        f"Chromium ({CHROMIUM}) and its driver ({CHROMEDRIVER}): apt-get install chromium chromium-driver",
        os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER),
    )
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    os.environ["SE_OFFLINE"] = "true"  # never let Selenium Manager download a driver or a browser
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in [
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        "--window-size=1280,1600",
        f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}",
    ]:
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


@pytest.fixture(scope="session")
def serve():
    """``serve(folder) -> base URL``: the folder over HTTP on 127.0.0.1, a free port."""
    servers = []

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    def start(folder: Path) -> str:
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(folder)))
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}/"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def _wait(driver, condition: str, timeout: float = 30.0):
    """Poll the JavaScript expression ``condition`` until it is truthy; return its last value."""
    end = time.monotonic() + timeout
    value = None
    while time.monotonic() < end:
        value = driver.execute_script(f"return ({condition});")
        if value:
            return value
        time.sleep(0.2)
    return value


MATH_DONE = (
    "!window.MathJax || (MathJax.startup && MathJax.startup.promise && "
    "(window.__mjDone || (MathJax.startup.promise.then(() => window.__mjDone = true), false)))"
)


def page_problems(driver, url: str, *, math: bool = False) -> list[str]:
    """Open ``url`` and list what a reader would see broken: console errors, images that did
    not load, and (``math=True``) math that MathJax did not typeset or left raw."""
    driver.get_log("browser")  # drop what earlier pages logged
    driver.get(url)
    _wait(driver, "document.readyState === 'complete'")
    _wait(driver, "Array.from(document.images).every(i => i.complete)")
    problems = []
    if math:
        if not _wait(driver, MATH_DONE):
            problems.append("MathJax did not finish typesetting")
        if not driver.execute_script("return document.querySelectorAll('mjx-container').length"):
            problems.append("no typeset math (no mjx-container)")
        if driver.execute_script("return document.querySelectorAll('mjx-merror').length"):
            problems.append("MathJax reported a math error")
        text = driver.execute_script("return document.body.innerText")
        if "$$" in text or "\\begin{" in text or "\\[" in text:
            problems.append("raw math left on the page")
    broken = driver.execute_script(
        "return Array.from(document.images).filter(i => !(i.complete && i.naturalWidth > 0))"
        ".map(i => i.getAttribute('src'))"
    )
    problems += [f"image not loaded: {src}" for src in broken]
    problems += [f"console: {e['message']}" for e in driver.get_log("browser") if e["level"] == "SEVERE"]
    return problems


def test_the_browser_check_rejects_a_broken_page(browser, serve, tmp_path):
    import base64

    png = base64.b64decode(
        "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
    )  # a 1x1 PNG
    (tmp_path / "ok.png").write_bytes(png)
    (tmp_path / "favicon.ico").write_bytes(png)
    (tmp_path / "good.html").write_text('<html><body><p>fine</p><img src="ok.png"></body></html>')
    (tmp_path / "bad.html").write_text(
        '<html><body><p>$$x^2$$</p><img src="ok.png"><img src="missing.png">'
        "<script>undefinedFunction()</script></body></html>"
    )
    base = serve(tmp_path)
    assert page_problems(browser, base + "good.html") == []
    problems = page_problems(browser, base + "bad.html", math=True)
    assert "image not loaded: missing.png" in problems
    assert "no typeset math (no mjx-container)" in problems and "raw math left on the page" in problems
    assert any("undefinedFunction" in p for p in problems), problems
    assert any("missing.png" in p and p.startswith("console:") for p in problems), problems


def test_the_site_in_a_browser(site, browser, serve):
    base = serve(site)
    if SCREENSHOTS.exists():
        shutil.rmtree(SCREENSHOTS)
    SCREENSHOTS.mkdir(parents=True)
    pages = [
        ("home", "index.html", False),
        ("spec", "spec.html", True),
        ("tutorial", "tutorials/02_tasa_figure2.html", True),
        ("api", "api/ds2ta_ref.lif.html", False),
    ]
    for name, path, math in pages:
        problems = page_problems(browser, base + path, math=math)
        first = {"spec": "mjx-container[display]", "tutorial": "img[src*='_images/']"}.get(name)
        if first:  # show what is checked: the first display equation, the first figure
            browser.execute_script(f"document.querySelector(\"{first}\").scrollIntoView({{block: 'start'}})")
            browser.execute_script("window.scrollBy(0, -120)")
        browser.save_screenshot(str(SCREENSHOTS / f"{name}.png"))
        assert problems == [], f"{path}: {problems}"
        if math:
            count = browser.execute_script("return document.querySelectorAll('mjx-container').length")
            assert count >= 3, f"{path}: only {count} typeset formulas"
    browser.get(base + "tutorials/02_tasa_figure2.html")
    assert browser.execute_script("return document.querySelectorAll('img[src*=\"_images/\"]').length") >= 2
    browser.get(base + "api/ds2ta_ref.lif.html")
    text = browser.execute_script("return document.body.innerText")
    assert "ds2ta_ref.lif.forward" in text and "(T, ...)" in text and "Eq. 2" in text

    browser.get(base + "search.html?q=nsad")
    _wait(browser, "(document.querySelector('#search-results .search-summary') || {}).innerText", timeout=60)
    hits = browser.execute_script(
        "return Array.from(document.querySelectorAll('#search-results ul.search li a'))"
        ".map(a => a.getAttribute('href'))"
    )
    browser.save_screenshot(str(SCREENSHOTS / "search.png"))
    assert hits, "the search for nsad found nothing"
    assert any("nsad" in h for h in hits), hits
    severe = [e["message"] for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert severe == []
