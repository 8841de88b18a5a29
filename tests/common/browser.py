#!/usr/bin/env python3
"""A real browser for the dashboard test: headless Chromium driven through
the DevTools protocol over a pipe (--remote-debugging-pipe), standard
library only.

Usage: browser.py BROWSER URL
Opens URL, then reads one JavaScript expression per line on stdin and
prints one JSON line per expression: {"value": ...} or {"error": "..."}.
An expression that returns a promise is awaited. EOF closes the browser.
"""

import ctypes
import json
import os
import signal
import subprocess
import sys

PR_SET_PDEATHSIG = 1


def child_setup(to_browser_r, from_browser_w):
    """In the browser's process: its pipe ends on fds 3 and 4, and death
    when this driver dies (a killed test leaves no browser behind)."""
    os.dup2(to_browser_r, 3)
    os.dup2(from_browser_w, 4)
    ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


class Browser:
    def __init__(self, executable, url):
        # The browser reads commands on fd 3 and writes answers on fd 4.
        to_browser_r, self.to_browser = os.pipe()
        self.from_browser, from_browser_w = os.pipe()
        # Move our ends out of the way of 3 and 4 in the child.
        self.process = subprocess.Popen(
            [executable, "--headless", "--no-sandbox", "--disable-gpu",
             "--remote-debugging-pipe", "--window-size=1280,1000", "about:blank"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            pass_fds=(3, 4),
            preexec_fn=lambda: child_setup(to_browser_r, from_browser_w),
        )
        os.close(to_browser_r)
        os.close(from_browser_w)
        self.buffer = b""
        self.next_id = 0
        targets = self.call("Target.getTargets")["targetInfos"]
        page = next(t for t in targets if t["type"] == "page")
        self.session = self.call(
            "Target.attachToTarget", {"targetId": page["targetId"], "flatten": True}
        )["sessionId"]
        self.call("Page.navigate", {"url": url}, session=True)

    def call(self, method, params=None, session=False):
        self.next_id += 1
        message = {"id": self.next_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = self.session
        os.write(self.to_browser, json.dumps(message).encode() + b"\0")
        while True:
            while b"\0" not in self.buffer:
                chunk = os.read(self.from_browser, 1 << 16)
                if not chunk:
                    raise RuntimeError("the browser closed the pipe")
                self.buffer += chunk
            raw, self.buffer = self.buffer.split(b"\0", 1)
            answer = json.loads(raw)
            if answer.get("id") == self.next_id:
                if "error" in answer:
                    raise RuntimeError(json.dumps(answer["error"]))
                return answer["result"]

    def evaluate(self, expression):
        result = self.call(
            "Runtime.evaluate",
            {"expression": expression, "returnByValue": True, "awaitPromise": True},
            session=True,
        )
        if "exceptionDetails" in result:
            raise RuntimeError(result["exceptionDetails"].get("text", "exception"))
        return result["result"].get("value")

    def close(self):
        self.process.kill()
        self.process.wait()


def main():
    browser = Browser(sys.argv[1], sys.argv[2])
    try:
        for line in sys.stdin:
            try:
                answer = {"value": browser.evaluate(line.strip())}
            except Exception as error:  # reported to the test, which decides
                answer = {"error": str(error)}
            print(json.dumps(answer), flush=True)
    finally:
        browser.close()


if __name__ == "__main__":
    main()
