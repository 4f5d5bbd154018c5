"""Screenshots of admin pages for the README (docs/screenshot-insights.png, the run page's
holdout comparison in docs/screenshot-holdout.png).

Signs in to a running demo's admin with headless Chromium and captures the page (or one
element of it, ``--selector``):

    python -m tests.admin.screenshot_insights --url http://127.0.0.1:8000 \
        --user admin --password admin --out docs/screenshot-insights.png
    python -m tests.admin.screenshot_insights --page /admin/shopreco/recomputerun/2/progress/ \
        --selector "#content-main" --out docs/screenshot-holdout.png
"""

from __future__ import annotations

import argparse

ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]


def main() -> None:
    from playwright.sync_api import sync_playwright

    parser = argparse.ArgumentParser()
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--user", default="admin")
    parser.add_argument("--password", default="admin")
    parser.add_argument("--out", default="docs/screenshot-insights.png")
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--page", default="/admin/shopreco/insights/")
    parser.add_argument("--selector", default=None, help="capture this element only")
    args = parser.parse_args()
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path="/usr/bin/chromium", args=ARGS)
        page = browser.new_page(viewport={"width": args.width, "height": 900})
        page.goto(f"{args.url}/admin/login/?next={args.page}")
        page.fill("#id_username", args.user)
        page.fill("#id_password", args.password)
        page.click("input[type=submit]")
        page.wait_for_selector(".shopreco-dashboard")
        if args.selector:
            page.locator(args.selector).screenshot(path=args.out)
        else:
            page.screenshot(path=args.out, full_page=True)
        browser.close()
    print(args.out)


if __name__ == "__main__":
    main()
