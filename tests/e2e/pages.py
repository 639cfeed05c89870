"""What a Roomcraft user does and sees, as selenium calls (a small page object)."""

from __future__ import annotations

import re
import uuid
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from selenium.common.exceptions import StaleElementReferenceException, TimeoutException
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.select import Select
from selenium.webdriver.support.wait import WebDriverWait

from credit_app.generation.features import FEATURES
from credit_app.testing.mail_stand_in import Mailbox
from tests.conftest import CONCURRENCY_DOMAIN, PASSWORD

WCAG_AA_TAGS = ("wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22aa")
# axe-core from its npm package (bench/lighthouse/package.json pins the version), with its
# licence beside it: axe-selenium-python bundles axe-core 3.1, too old for WCAG 2.1 rules.
AXE_SOURCE = Path(__file__).resolve().parent / "vendor" / "axe.min.js"
MIN_AXE_VERSION = (4, 10)
RESULT_TIMEOUT = 45
MIN_AXE_RULES = 20

_RUN_AXE = """
const done = arguments[arguments.length - 1];
const tags = arguments[0].filter(function (tag) { return axe.getRules([tag]).length > 0; });
axe.run(document, {runOnly: {type: "tag", values: tags}}).then(function (results) {
  done({version: axe.version, rules: axe.getRules(tags).length, violations: results.violations});
}, function (error) { done({version: axe.version, error: String(error)}); });
"""

_RECORD_COUNTER_AT_SEND = """
window.e2eCounterAtSend = [];
document.addEventListener("htmx:beforeSend", function (event) {
  if (!event.detail.elt.matches("[data-spends-credit]")) return;
  const number = document.querySelector("#sidebar-credits [data-credit-number]");
  window.e2eCounterAtSend.push(number ? number.textContent : null);
});
"""
_FINISHED_GENERATION = """
const done = document.querySelector(
  "#generation-result .generation-succeeded, #generation-result .generation-failed");
return done ? done.className : null;
"""

_TRANSITIONS_DONE = """
return document.getAnimations().filter(function (animation) {
  return animation instanceof CSSTransition && animation.playState === "running";
}).length === 0;
"""
_WIDER_THAN_SCREEN = """
const width = arguments[0];
return [...document.querySelectorAll("body *")]
  .filter(function (e) { return e.getBoundingClientRect().right > width + 0.5; })
  .slice(0, 5).map(function (e) { return e.tagName + "." + e.className + "#" + e.id; });
"""


class Roomcraft:
    """One browser on the live app, with the waits each step needs."""

    def __init__(
        self, driver: WebDriver, base_url: str, screenshot_dir: Path, mailbox: Mailbox
    ) -> None:
        self.driver = driver
        self.base_url = base_url
        self.screenshot_dir = screenshot_dir
        self.mailbox = mailbox

    def wait(self, timeout: float = 10) -> WebDriverWait:
        return WebDriverWait(
            self.driver,
            timeout,
            poll_frequency=0.05,
            ignored_exceptions=(StaleElementReferenceException,),
        )

    def open(self, path: str, check: bool = True) -> None:
        """Load `path`; with `check`, fail on any axe-core violation of the loaded page."""
        self.driver.get(self.base_url + path)
        if check:
            self.assert_accessible()

    @property
    def path(self) -> str:
        return urlsplit(self.driver.current_url).path

    @property
    def query(self) -> dict[str, list[str]]:
        return parse_qs(urlsplit(self.driver.current_url).query)

    def find(self, css: str) -> WebElement:
        return self.driver.find_element(By.CSS_SELECTOR, css)

    def script(self, source: str, *args: object) -> object:
        return self.driver.execute_script(source, *args)

    def sign_up(self, verify: bool = True) -> str:
        """Create an account through the real form and, unless `verify=False`, confirm its
        address with the link that was mailed; returns its email."""
        email = f"e2e-{uuid.uuid4().hex[:12]}@{CONCURRENCY_DOMAIN}"
        self.open("/signup")
        self.find("#email").send_keys(email)
        self.find("#password").send_keys(PASSWORD)
        self.find("#confirm").send_keys(PASSWORD)
        self.find("form button[type=submit]").click()
        self.wait().until(ec.url_matches(r"/dashboard$"))
        if verify:
            self.follow_mailed_link(email, "Confirm your email", "/verify-email/")
            self.wait().until(ec.url_matches(r"/dashboard$"))
        return email

    def mailed_link(self, to: str, subject: str, path_prefix: str, count: int = 1) -> str:
        """The path of the link in the `count`-th email to `to` about `subject`."""
        message = self.mailbox.wait_for(to, subject, count=count, timeout=RESULT_TIMEOUT)
        match = re.search(re.escape(path_prefix) + r"[^\s<>\"']*", message.text)
        assert match, f"no {path_prefix} link in the email: {message.text}"
        return match.group(0)

    def follow_mailed_link(self, to: str, subject: str, path_prefix: str, count: int = 1) -> None:
        self.open(self.mailed_link(to, subject, path_prefix, count))

    def fill(self, css: str, text: str) -> None:
        field = self.find(css)
        field.clear()
        field.send_keys(text)

    def submit(self, form_css: str = "form") -> None:
        self.find(f"{form_css} button[type=submit]").click()

    def flash_text(self) -> str:
        return self.find("#flash-area").text

    def wait_for_flash(self, text: str) -> None:
        """Wait until the flash area says `text`: the way to know a form that posts back to
        the page it sits on has been answered, since the address alone does not change."""
        self.wait().until(lambda _: text in self.flash_text(), f"the flash never said {text!r}")

    def wait_for_layout(self) -> None:
        """Wait until the layout's CSS transitions (the sidebar sliding away after a resize to
        a phone's width) have ended, so a screenshot shows where things come to rest."""
        self.wait().until(
            lambda _: self.script(_TRANSITIONS_DONE), "the page kept moving after the resize"
        )

    def screenshots(self, name: str, fits: bool = True, show: str | None = None) -> list[Path]:
        """The viewport at 1440 px (desktop) and 390 px (a phone) as <name>-1440.png and
        <name>-390.png (once the layout's transitions have ended; with `fits`, the page must
        not be wider than the screen), then the window as it was. Every state photographed is
        checked with axe-core first, at both widths. The page is scrolled to its top, or to
        the element `show` selects (a result far down a phone's page)."""
        paths = []
        for width, height in ((1440, 900), (390, 844)):
            self.driver.execute_cdp_cmd(
                "Emulation.setDeviceMetricsOverride",
                {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False},
            )
            self.wait_for_layout()
            overflow = self.script("return document.documentElement.scrollWidth;")
            assert not fits or overflow <= width, (
                f"{name} is {overflow} px wide at {width} px: "
                f"{self.script(_WIDER_THAN_SCREEN, width)}"
            )
            self.assert_accessible()
            paths.append(self.screenshot(f"{name}-{width}", show))
        self.driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
        return paths

    def counter(self) -> str | None:
        """The sidebar's "n/total" as shown (None for Pro or no counter)."""
        return self.script(
            'const n = document.querySelector("#sidebar-credits '
            '[data-credit-number]"); return n ? n.textContent.trim() : null;'
        )

    def counter_label(self) -> str | None:
        """What a screen reader reads for the counter (its visually hidden full text)."""
        return self.script(
            'const t = document.querySelector("#sidebar-credits '
            '[data-credit-text]"); return t ? t.textContent.trim() : null;'
        )

    def wait_for_counter(self, text: str, timeout: float = 10) -> None:
        self.wait(timeout).until(
            lambda _: self.counter() == text,
            f"the counter never showed {text!r} (last: {self.counter()!r})",
        )

    def wait_for_live_counter(self) -> None:
        """Wait for the live socket (the counter stops polling once it is open)."""
        self.wait().until(
            lambda _: "live-down" not in self.find("body").get_attribute("class"),
            "the live credit socket did not connect",
        )

    def go_to_feature(self, key: str) -> None:
        """Follow the sidebar link to a feature page."""
        feature = FEATURES[key]
        self.find(f'#sidebar a[href="/dashboard/{feature.slug}"]').click()
        self.wait().until(ec.text_to_be_present_in_element((By.TAG_NAME, "h1"), feature.title))
        self.script(_RECORD_COUNTER_AT_SEND)

    def choose_photo(self, path: Path) -> WebElement:
        """Pick the file and wait for its preview to load; returns the preview image."""
        self.find("#image").send_keys(str(path))
        preview = self.find("#image-preview")
        self.wait().until(
            lambda _: (
                preview.is_displayed()
                and self.script(
                    "return arguments[0].complete && arguments[0].naturalWidth > 0;", preview
                )
            )
        )
        return preview

    def draw_mask(self, preview: WebElement) -> dict[str, float]:
        """Drag from 30% to 60% of the preview's width and height; returns the mask fields."""
        width, height = preview.size["width"], preview.size["height"]
        start_x, start_y = round(-0.2 * width), round(-0.2 * height)
        ActionChains(self.driver, duration=50).move_to_element_with_offset(
            preview, start_x, start_y
        ).click_and_hold().move_by_offset(round(0.1 * width), round(0.1 * height)).move_by_offset(
            round(0.2 * width), round(0.2 * height)
        ).release().perform()
        values = {
            key: self.find(f"[data-mask-{key}]").get_attribute("value")
            for key in ("x", "y", "w", "h")
        }
        assert all(values.values()), f"the mask fields were not filled: {values}"
        return {key: float(value) for key, value in values.items()}

    def select(self, name: str, value: str) -> None:
        Select(self.find(f'#feature-form select[name="{name}"]')).select_by_value(value)

    def type_prompt(self, text: str) -> None:
        self.find("#prompt").send_keys(text)

    def generate(self) -> WebElement:
        """Press Generate; returns the button."""
        button = self.find("#feature-form button[type=submit]")
        button.click()
        return button

    def counter_at_send(self, requests: int = 1) -> list[str | None]:
        """What the counter showed as each spending request left the browser (waits for
        `requests` of them)."""

        def sent(_: WebDriver) -> list[str | None] | None:
            values = self.script("return window.e2eCounterAtSend;")
            return values if values is not None and len(values) >= requests else None

        return self.wait().until(sent, "the form was not sent")

    def wait_for_result(self, timeout: float = RESULT_TIMEOUT) -> str:
        """Wait for the result fragment to finish polling; returns its text, fails on errors."""
        try:
            classes = self.wait(timeout).until(lambda _: self.script(_FINISHED_GENERATION))
        except TimeoutException:
            panel = self.find("#generation-result").get_attribute("innerHTML")
            raise AssertionError(
                f"the generation did not finish; the panel shows: {panel}"
            ) from None
        text = self.find("#generation-result").text
        assert "generation-succeeded" in classes, f"the generation failed: {text}"
        return text

    def dialog(self) -> WebElement | None:
        found = self.driver.find_elements(By.CSS_SELECTOR, '#modal-root [role="dialog"]')
        return found[0] if found else None

    def wait_for_dialog(self) -> WebElement:
        return self.wait().until(lambda _: self.dialog(), "the upgrade modal did not open")

    def wait_for_no_dialog(self) -> None:
        self.wait().until(lambda _: self.dialog() is None, "the upgrade modal did not close")

    def focus_in_dialog(self) -> bool:
        return self.script(
            "const d = document.querySelector('#modal-root [role=\"dialog\"]');"
            "return Boolean(d && d.contains(document.activeElement));"
        )

    def active_element(self) -> WebElement:
        return self.driver.switch_to.active_element

    def screenshot(self, name: str, show: str | None = None) -> Path:
        """Save the viewport, scrolled to the top (or to the element `show` selects), as
        <name>.png."""
        if show is None:
            self.script("window.scrollTo(0, 0);")
        else:
            self.script(
                'arguments[0].scrollIntoView({block: "start", behavior: "instant"});',
                self.find(show),
            )
        path = self.screenshot_dir / f"{name}.png"
        assert self.driver.save_screenshot(str(path)), f"could not save {path}"
        return path

    def axe_violations(self) -> tuple[list[dict], str]:
        """Every WCAG 2.2 A/AA violation axe-core finds on the page as it is now, and a
        readable report of them (axe-core 4.10+, injected from tests/e2e/vendor)."""
        if not self.script("return Boolean(window.axe);"):
            self.script(AXE_SOURCE.read_text())
        outcome = self.driver.execute_async_script(_RUN_AXE, list(WCAG_AA_TAGS))
        assert "error" not in outcome, f"axe-core {outcome.get('version')}: {outcome['error']}"
        version = tuple(int(part) for part in outcome["version"].split(".")[:2])
        assert version >= MIN_AXE_VERSION, f"axe-core {outcome['version']} is too old"
        assert outcome["rules"] >= MIN_AXE_RULES, f"axe ran only {outcome['rules']} rules"
        violations = outcome["violations"]
        lines = [f"axe-core {outcome['version']} on {self.path}: {len(violations)} violations"]
        for violation in violations:
            lines.append(f"- {violation['id']} ({violation['impact']}): {violation['help']}")
            lines += [
                f"    {node['target']}: {node.get('failureSummary', '')[:300]}"
                for node in violation["nodes"][:5]
            ]
        return violations, "\n".join(lines)

    def assert_accessible(self) -> None:
        """Fail on any axe-core violation in the page's current state."""
        violations, report = self.axe_violations()
        assert not violations, report
