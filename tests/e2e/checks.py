"""What every page must pass in the browser: no sideways scroll at phone width, 44 px tap targets, axe."""
from __future__ import annotations

from axe_playwright_python.sync_playwright import Axe

_axe = Axe()

TAP_TARGETS = """() => {
  const small = [];
  for (const el of document.querySelectorAll('button, select, input:not([type=hidden]):not([type=checkbox]):not([type=radio]), textarea, nav a, label.check, .pager a')) {
    const r = el.getBoundingClientRect();
    if (r.width === 0 && r.height === 0) continue;
    if (r.height < 44 || r.width < 44) small.push(el.outerHTML.slice(0, 80) + ' ' + Math.round(r.width) + 'x' + Math.round(r.height));
  }
  return small;
}"""


def check_page(page) -> None:
    """Assert the page fits the phone, its targets are big enough, and axe finds nothing serious."""
    overflow = page.evaluate("() => document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 0, f"{page.url} scrolls sideways by {overflow} px at {page.viewport_size['width']} px"
    small = page.evaluate(TAP_TARGETS)
    assert small == [], f"{page.url}: tap targets under 44 px: {small[:5]}"
    results = _axe.run(page)
    bad = [(v["id"], v["impact"], v["help"], [n["target"] for n in v["nodes"]][:3])
           for v in results.response["violations"] if v["impact"] in ("serious", "critical")]
    assert bad == [], f"{page.url}: accessibility violations {bad}"
